/**
 * What differs between PKCS#11 tokens, by name (QKMS_HSM_PROFILE). Only softhsm2 runs in this
 * project's tests; the others record vendor documentation (pkcs11-and-clients.md §3.2,
 * docs/hsm/other-hsms.md) and are checked at start-up against the configuration, so a setting the
 * token cannot honour stops the gateway with the reason instead of failing on the first request.
 */
export type DataKeyWrapMode = 'AES_KWP_HMAC' | 'AES_GCM';

/** By PKCS#11 function name: CKR codes with which a token says the input does not verify. */
export type IntegrityErrors = Readonly<Record<string, readonly string[]>>;

export interface HsmProfile {
  readonly name: string;
  /** Exercised by the test suite on these machines. */
  readonly tested: boolean;
  /** Data-key formats the token supports (docs/crypto.md); the first is the default of QKMS_DATA_KEY_WRAP. */
  readonly dataKeyWraps: readonly DataKeyWrapMode[];
  /**
   * Who makes AES-GCM IVs: 'caller' — QKMS draws 12 bytes with C_GenerateRandom in the same
   * session; 'hsm' — QKMS passes a zero-filled IV and the token writes the IV it chose into it
   * (pkcs11js passes a pointer to the Buffer, §1.2), checked to have changed.
   */
  readonly gcmIv: 'caller' | 'hsm';
  /**
   * Session objects after which the module is finalised and re-initialised to free them, for
   * tokens that keep destroyed session objects in memory until C_Finalize.
   */
  readonly recycleAfterSessionObjects?: number;
  /**
   * CKR codes that, from these PKCS#11 functions, mean the input does not verify (HsmError kind
   * 'integrity': InvalidCiphertextException in Decrypt) on this token, on top of the standard
   * codes of ckr-table.ts. Elsewhere the same code keeps its usual kind.
   */
  readonly integrityErrors?: IntegrityErrors;
  /** Hashes the token's CKM_RSA_PKCS_OAEP accepts (RSAES_OAEP_SHA_1 / _SHA_256). */
  readonly oaepHashes: ReadonlyArray<'SHA1' | 'SHA256'>;
  /** Default QKMS_PKCS11_SESSIONS. */
  readonly sessions: number;
  /** Why QKMS cannot run on this token at all, if it cannot. */
  readonly unsupported?: string;
  readonly notes: string;
}

export const HSM_PROFILES: Readonly<Record<string, HsmProfile>> = {
  softhsm2: {
    name: 'softhsm2',
    tested: true,
    dataKeyWraps: ['AES_KWP_HMAC'], // 2.6.1: C_WrapKey with CKM_AES_GCM is CKR_MECHANISM_INVALID
    gcmIv: 'caller', // SoftHSM uses the IV it is given
    // SessionObjectStore keeps every session object in `allObjects` until C_Finalize (~240 B each,
    // one per GenerateDataKey or KWP Decrypt): 50,000 bounds that to about 12 MB.
    recycleAfterSessionObjects: 50000,
    // 2.6.1 answers a GCM tag mismatch and an OAEP ciphertext that does not decode (C_Decrypt), and
    // a corrupt KWP blob (C_UnwrapKey), with CKR_GENERAL_ERROR; 2.7.0 with CKR_ENCRYPTED_DATA_INVALID
    // (pkcs11-and-clients.md §1.3, §2.4). Both answers are the same "bad input" here.
    integrityErrors: { C_Decrypt: ['CKR_GENERAL_ERROR'], C_UnwrapKey: ['CKR_GENERAL_ERROR'] },
    oaepHashes: ['SHA1'], // OAEP with SHA-256 is CKR_ARGUMENTS_BAD in 2.6.1 and 2.7.0 (pkcs11-and-clients.md §0)
    sessions: 4,
    notes: 'SoftHSM2 2.6.1: KWP unwrap returns the key zero-padded to 8 bytes (docs/hsm/softhsm2.md).',
  },
  generic: {
    name: 'generic',
    tested: false,
    dataKeyWraps: ['AES_KWP_HMAC', 'AES_GCM'],
    gcmIv: 'caller',
    oaepHashes: ['SHA1', 'SHA256'],
    sessions: 4,
    notes: 'Standard PKCS#11 v2.40 behaviour: the default for a module QKMS has no profile for.',
  },
  luna: {
    name: 'luna',
    tested: false,
    dataKeyWraps: ['AES_KWP_HMAC', 'AES_GCM'],
    gcmIv: 'caller', // Luna accepts a supplied IV (xks-proxy settings_luna.toml)
    oaepHashes: ['SHA1', 'SHA256'],
    sessions: 16, // Luna's guidance is about 30 concurrent sessions per HSM
    notes: 'Luna Cloud HSM forces CKA_SENSITIVE=1 on generated keys, so GenerateDataKey cannot read the data key there.',
  },
  cloudhsm: {
    name: 'cloudhsm',
    tested: false,
    dataKeyWraps: ['AES_GCM'], // CKM_AES_KEY_WRAP_PAD is not among its documented wrap mechanisms
    gcmIv: 'hsm', // zero-filled IV in, HSM-chosen IV out (aws-cloudhsm-pkcs11-examples aes_gcm.c)
    oaepHashes: ['SHA1', 'SHA256'],
    sessions: 16,
    notes: 'GCM input up to 16 KB per call; CKA_SENSITIVE handling has known issues.',
  },
  nshield: {
    name: 'nshield',
    tested: false,
    dataKeyWraps: ['AES_KWP_HMAC', 'AES_GCM'],
    gcmIv: 'hsm', // requires a zero IV on input (xks-proxy settings_nshield.toml)
    oaepHashes: ['SHA1', 'SHA256'],
    sessions: 16,
    notes: '',
  },
  yubihsm: {
    name: 'yubihsm',
    tested: false,
    dataKeyWraps: [],
    gcmIv: 'caller',
    oaepHashes: ['SHA1', 'SHA256'],
    sessions: 4,
    unsupported: 'YubiHSM 2 never exports a key value in plaintext (GenerateDataKey reads the data key it generated) and its module lacks CKM_AES_GCM (Encrypt needs it)',
    notes: '256 objects / 126 KB in total.',
  },
};

/** The profile's problems with the chosen settings, as start-up error lines (empty when it fits). */
export function profileProblems(profile: HsmProfile, dataKeyWrap: DataKeyWrapMode): string[] {
  if (profile.unsupported) return [`QKMS_HSM_PROFILE=${profile.name}: not supported: ${profile.unsupported}`];
  if (!profile.dataKeyWraps.includes(dataKeyWrap)) {
    return [`QKMS_DATA_KEY_WRAP=${dataKeyWrap} is not available with QKMS_HSM_PROFILE=${profile.name} (supported: ${profile.dataKeyWraps.join(', ')})`];
  }
  return [];
}
