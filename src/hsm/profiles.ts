/**
 * What differs between PKCS#11 tokens and cannot be found by asking the token, by name
 * (QKMS_HSM_PROFILE): who makes GCM IVs, error codes that mean "does not verify", when to recycle,
 * how many sessions. What the token can do is not declared here: capability discovery finds it at
 * start-up (capabilities.ts). softhsm2 runs in this project's tests, generic on opencryptoki and
 * NSS softoken too; the vendor profiles record vendor documentation (docs/hsm/other-hsms.md).
 */

/** By PKCS#11 function name: CKR codes with which a token says the input does not verify. */
export type IntegrityErrors = Readonly<Record<string, readonly string[]>>;

export interface HsmProfile {
  readonly name: string;
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
  /**
   * The module's list of token objects misses objects other processes made or destroyed before
   * this process's own last token write, until C_Initialize (SoftHSM2: Generation::commit adopts
   * the on-disk counter, so the next OSToken::index sees nothing new). Then a search by id that
   * finds nothing, after a write of this process, re-initialises the module and searches again.
   */
  readonly staleIndexAfterOwnWrite?: boolean;
  /** Default QKMS_PKCS11_SESSIONS. */
  readonly sessions: number;
  /**
   * Default QKMS_HSM_THREADS: 1 for a token that computes in the process (its calls take CPU, not
   * waiting); more for a network HSM, whose calls mostly wait for the device's answer.
   */
  readonly threads: number;
  /** C_GetTokenInfo's manufacturerID of the tokens the profile is for: another token gets a warning at start-up. */
  readonly manufacturer?: RegExp;
  readonly notes: string;
}

export const HSM_PROFILES: Readonly<Record<string, HsmProfile>> = {
  softhsm2: {
    name: 'softhsm2',
    manufacturer: /SoftHSM/i,
    gcmIv: 'caller', // SoftHSM uses the IV it is given
    // SessionObjectStore keeps every session object in `allObjects` until C_Finalize (~240 B each,
    // one per GenerateDataKey or KWP Decrypt): 50,000 bounds that to about 12 MB.
    recycleAfterSessionObjects: 50000,
    // 2.6.1 answers a GCM tag mismatch and an OAEP ciphertext that does not decode (C_Decrypt), and
    // a corrupt KWP blob (C_UnwrapKey), with CKR_GENERAL_ERROR; 2.7.0 with CKR_ENCRYPTED_DATA_INVALID
    // (pkcs11-and-clients.md §1.3, §2.4). Both answers are the same "bad input" here. An unwrapped
    // private key that is not PKCS#8 of the template's key type (BYOK: garbage, an EC key into an RSA
    // key, an Ed25519 key into an EC key) is CKR_FUNCTION_FAILED from C_UnwrapKey (found here).
    integrityErrors: { C_Decrypt: ['CKR_GENERAL_ERROR'], C_UnwrapKey: ['CKR_GENERAL_ERROR', 'CKR_FUNCTION_FAILED'] },
    staleIndexAfterOwnWrite: true, // docs/hsm/softhsm2.md "Several processes on one token"
    sessions: 4,
    threads: 1,
    notes: 'SoftHSM2 2.6.1: KWP unwrap returns the key zero-padded to 8 bytes (docs/hsm/softhsm2.md).',
  },
  generic: {
    name: 'generic',
    gcmIv: 'caller',
    sessions: 4,
    threads: 1,
    notes: 'Standard PKCS#11 v2.40 behaviour: the default for a module QKMS has no profile for.',
  },
  luna: {
    name: 'luna',
    manufacturer: /SafeNet|Thales|Gemalto/i,
    gcmIv: 'caller', // Luna accepts a supplied IV (xks-proxy settings_luna.toml)
    sessions: 16, // Luna's guidance is about 30 concurrent sessions per HSM
    threads: 8,
    notes: 'Luna Cloud HSM forces CKA_SENSITIVE=1 on generated keys, so GenerateDataKey cannot read the data key there: QKMS_DATA_KEY_WRAP=AES_GCM_ENCRYPT.',
  },
  cloudhsm: {
    name: 'cloudhsm',
    manufacturer: /Marvell|Cavium|Amazon/i,
    gcmIv: 'hsm', // zero-filled IV in, HSM-chosen IV out (aws-cloudhsm-pkcs11-examples aes_gcm.c)
    sessions: 16,
    threads: 8,
    notes: 'GCM input up to 16 KB per call; CKA_SENSITIVE handling has known issues.',
  },
  nshield: {
    name: 'nshield',
    manufacturer: /nCipher|Entrust/i,
    gcmIv: 'hsm', // requires a zero IV on input (xks-proxy settings_nshield.toml)
    sessions: 16,
    threads: 8,
    notes: '',
  },
  yubihsm: {
    name: 'yubihsm',
    manufacturer: /Yubico/i,
    gcmIv: 'caller',
    sessions: 4,
    threads: 1,
    notes: '256 objects / 126 KB in total; never exports a key value in plaintext, which GenerateDataKey needs (capability discovery stops the start).',
  },
};

/** A warning when the token is not one the profile was written for (undefined when it is, or the profile names none). */
export function profileMismatch(profile: HsmProfile, manufacturer: string): string | undefined {
  if (!profile.manufacturer || profile.manufacturer.test(manufacturer)) return undefined;
  return `QKMS_HSM_PROFILE=${profile.name} is meant for another token (this one is made by '${manufacturer}'): its IV, error-code and recycling settings may not fit`;
}
