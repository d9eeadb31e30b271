import type { CallStats } from './call-stats';
import type { TokenCapabilities } from './capabilities';

/**
 * A token object QKMS made, as the HSM layer finds it: by `id` (CKA_ID, hex), which is random and
 * recorded in the store before the object is created, so it never collides; `label` (CKA_LABEL) is
 * for people (pkcs11-tool, the compliance report) and for error messages, never for lookups. A
 * lookup that does not find exactly one object with the id fails (HsmError 'key'): it never guesses.
 */
export interface ObjectRef {
  id: string;
  label: string;
}

/**
 * The device boundary in domain vocabulary: object references, Buffers and algorithm names.
 * Sessions, handles and CK_* values never cross it, so FakeHsm, FaultInjectingHsm and DeadlineHsm
 * can stand in for or wrap the PKCS#11 implementation.
 */
export interface Hsm {
  /** A token AES-256 key: sensitive, never extractable, wrap/unwrap and GCM encrypt/decrypt only. */
  generateKek(ref: ObjectRef): Promise<void>;
  /** A token HMAC key (default SHA-256, 32 bytes): sensitive, never extractable, sign/verify only. */
  generateMacKey(ref: ObjectRef, spec?: HmacKeySpec): Promise<void>;
  /**
   * A token key pair for a KMS asymmetric key: the private key sensitive and never extractable,
   * both limited to the usage's mechanisms (sign/verify or decrypt/encrypt).
   */
  generateKeyPair(refs: { private: ObjectRef; public: ObjectRef }, spec: KeyPairSpec, usage: KeyPairUsage): Promise<void>;
  /**
   * ECDH (CKM_ECDH1_DERIVE, no KDF) between the private key and a peer's public point (04 ‖ X ‖ Y):
   * the shared secret, derived into an ephemeral object whose value is read and which is destroyed.
   */
  deriveSharedSecret(privateKey: ObjectRef, peerPoint: Buffer): Promise<Buffer>;
  /** The public key as DER SubjectPublicKeyInfo, read from the token's public key object. */
  publicKey(ref: ObjectRef): Promise<Buffer>;
  /** Signs a digest with the private key; ECDSA signatures come back DER-encoded (X9.62). */
  signDigest(ref: ObjectRef, scheme: SigningScheme, digest: Buffer): Promise<Buffer>;
  /** False for a signature that does not verify (including a malformed one). */
  verifyDigest(ref: ObjectRef, scheme: SigningScheme, digest: Buffer, signature: Buffer): Promise<boolean>;
  /**
   * A data key pair born in the HSM as session objects, its private key read once (PKCS#8 DER) with
   * the public key (SPKI DER), and both objects destroyed.
   */
  generateDataKeyPair(spec: KeyPairSpec): Promise<{ privateKey: Buffer; publicKey: Buffer }>;
  /** RSAES-OAEP with the public key (MGF1 with the same hash, empty label). */
  rsaEncrypt(ref: ObjectRef, hash: 'SHA1' | 'SHA256', plaintext: Buffer): Promise<Buffer>;
  /** RSAES-OAEP with the private key; HsmError kind 'integrity' when the ciphertext does not decode. */
  rsaDecrypt(ref: ObjectRef, hash: 'SHA1' | 'SHA256', ciphertext: Buffer): Promise<Buffer>;
  /**
   * A data key born in the HSM (C_GenerateKey, session object), its value read once, wrapped under
   * the KEK inside the HSM (C_WrapKey: RFC 5649, or AES-GCM with the AAD), and the object destroyed.
   * AES_GCM_ENCRYPT: the key from the token's RNG instead, encrypted under the KEK with AES-GCM and
   * the AAD (C_Encrypt), for tokens that will not let a generated key's value be read.
   */
  generateWrappedDataKey(kek: ObjectRef, lengthBytes: number, wrap: DataKeyWrap): Promise<WrappedDataKey>;
  /**
   * BYOK: material encrypted under a wrapping key pair this HSM made (GetParametersForImport)
   * unwrapped into token objects with the target's ids, in the HSM: RSAES-OAEP straight into the
   * object, or RSA-AES key wrap in two steps (OAEP into an ephemeral AES key, then RFC 5649 into
   * the object). Answers what identifies the material without revealing it. HsmError 'integrity'
   * when the encrypted material does not decrypt or decode; the objects are then not made.
   */
  importKeyMaterial(request: ImportRequest): Promise<ImportedFacts>;
  /** RFC 5649 unwrap into an ephemeral object whose value is read and which is destroyed at once. */
  unwrapDataKey(kek: ObjectRef, wrapped: Buffer): Promise<Buffer>;
  /** AES-256-GCM with a fresh IV (made as the token's profile says: gcmIv), returned with the output. */
  encryptAesGcm(kek: ObjectRef, plaintext: Buffer, aad: Buffer): Promise<{ iv: Buffer; ciphertextAndTag: Buffer }>;
  /** AES-256-CBC with PKCS#7 padding and a fresh 16-byte IV from the token's RNG, returned with the output. */
  encryptAesCbc(kek: ObjectRef, plaintext: Buffer): Promise<{ iv: Buffer; ciphertext: Buffer }>;
  /** AES-256-CBC decryption; the caller has verified the blob's MAC first (encrypt-then-MAC). */
  decryptAesCbc(kek: ObjectRef, iv: Buffer, ciphertext: Buffer): Promise<Buffer>;
  /** Throws HsmError kind 'integrity' when the tag does not verify. */
  decryptAesGcm(kek: ObjectRef, ciphertextAndTag: Buffer, iv: Buffer, aad: Buffer): Promise<Buffer>;
  hmacSign(macKey: ObjectRef, data: Buffer, hash?: Hash): Promise<Buffer>;
  hmacVerify(macKey: ObjectRef, data: Buffer, mac: Buffer, hash?: Hash): Promise<boolean>;
  randomBytes(length: number): Promise<Buffer>;
  /**
   * Destroys every token object carrying the ref's id (normally one; a missing object is not an
   * error: destroying is how a crash is rolled back or a deletion resumed) and says how many.
   */
  destroyKey(ref: ObjectRef): Promise<number>;
  /** How many token objects carry the ref's id, found afresh (not from a cache). */
  countObjects(ref: ObjectRef): Promise<number>;
  /**
   * Every token key object (secret, private, public) whose label starts with the prefix, found
   * afresh with a looped C_FindObjects: start-up reconciliation and `qkms orphans`.
   */
  listKeyObjects(labelPrefix: string): Promise<ObjectRef[]>;
  /**
   * What the token itself says about every object with the ref's id, found afresh (not from a
   * cache): class, type, protection flags, allowed mechanisms. Reads no secret value.
   */
  inspectKeyObjects(ref: ObjectRef): Promise<KeyObjectFacts[]>;
  health(): Promise<HsmHealth>;
  /** What the token can do, found when it was opened (capabilities.ts); answered from memory. */
  capabilities(): TokenCapabilities;
  /**
   * Counters and gauges for /metrics, without touching the token: answered from memory at once
   * (with the HSM thread, from its last report, at most HSM_STATS_INTERVAL_MS old).
   */
  stats(): HsmStats;
  /**
   * Calls accepted and not finished, waiting or in progress, from memory and cheaply (asked before
   * every request: QKMS_HSM_MAX_QUEUE). A call whose caller gave up at its deadline counts until
   * the HSM layer is done with it: that is the queue the next request would wait behind.
   */
  pendingCalls(): number;
  close(): Promise<void>;
}

/**
 * One token object as the token reports it, in PKCS#11's own names (an auditor compares them with
 * pkcs11-tool): e.g. objectClass 'CKO_SECRET_KEY', flags.CKA_SENSITIVE. A flag is absent when the
 * token does not report it.
 */
export interface KeyObjectFacts {
  label: string;
  /** CKA_ID as hex. */
  id: string;
  objectClass: string;
  keyType: string;
  flags: Record<string, boolean>;
  /** CKA_ALLOWED_MECHANISMS by name; null when the token reports none (no restriction). */
  allowedMechanisms: string[] | null;
  keyGenMechanism?: string;
  /** CKA_VALUE_LEN × 8 or CKA_MODULUS_BITS. */
  sizeBits?: number;
  /** The named curve of CKA_EC_PARAMS. */
  curve?: string;
}

export type ImportWrappingAlgorithm = 'RSAES_OAEP_SHA_1' | 'RSAES_OAEP_SHA_256' | 'RSA_AES_KEY_WRAP_SHA_1' | 'RSA_AES_KEY_WRAP_SHA_256';

/** What importKeyMaterial makes: an AES-256 KEK, an HMAC key, or a key pair (both objects). */
export type ImportTarget =
  | { kind: 'AES'; ref: ObjectRef }
  | { kind: 'HMAC'; ref: ObjectRef; hash: Hash }
  | { kind: 'KEY_PAIR'; refs: { private: ObjectRef; public: ObjectRef }; spec: KeyPairSpec; usage: KeyPairUsage };

export interface ImportRequest {
  /** The private key of the wrapping pair (generateKeyPair with usage 'UNWRAP'). */
  wrappingKey: ObjectRef;
  algorithm: ImportWrappingAlgorithm;
  encrypted: Buffer;
  target: ImportTarget;
}

/**
 * What identifies imported material, made by the HSM from it: for AES the encryption of a zero
 * block (the classic key check value, in full), for HMAC the MAC of a fixed string, for a key
 * pair its public key (SPKI DER); empty when the token would not use the material as such a key
 * (or a key pair on a curve it does not know). `valueBytes`: a secret's length; `keyShape`: a pair's modulus
 * bits or curve, so the caller can refuse material that does not fit the key spec.
 */
export interface ImportedFacts {
  check: Buffer;
  valueBytes?: number;
  keyShape?: { bits: number } | { curve: string };
}

/** What /metrics reports about the device layer. */
export interface HsmStats {
  /** The circuit breaker is closed: the token answered the last call. */
  isUp: boolean;
  /** The PKCS#11 session pool (session-pool.ts). */
  sessions: { size: number; inUse: number; waiters: number };
  /** Calls sent to the HSM thread and not answered yet; always 0 without the thread. */
  queuedCalls: number;
  /** Cumulative latency and errors of each C_* function since the module was opened. */
  pkcs11: CallStats;
}

/** How often the HSM thread reports its stats to the main thread. */
export const HSM_STATS_INTERVAL_MS = 1000;

/**
 * AES_KWP: RFC 5649 (integrity of the key only). AES_GCM: for tokens whose C_WrapKey can do GCM,
 * with AAD. AES_GCM_ENCRYPT: a random key encrypted with C_Encrypt AES-GCM, with AAD.
 */
export type DataKeyWrap = { mechanism: 'AES_KWP' } | { mechanism: 'AES_GCM' | 'AES_GCM_ENCRYPT'; aad: Buffer };

/** The data key, its wrapped form, and for AES_GCM and AES_GCM_ENCRYPT the IV (the wrapped form is then ciphertext ‖ tag). */
export interface WrappedDataKey {
  plaintext: Buffer;
  wrapped: Buffer;
  iv?: Buffer;
}

/** GCM IV size: 96 bits, the size GCM is specified for. */
export const GCM_IV_BYTES = 12;

export interface HsmHealth {
  isUp: boolean;
  detail: string;
}

/** Every method that does HSM work (all but health, capabilities, stats and close), for wrappers that forward them. */
export const HSM_CALLS = [
  'generateKek', 'generateMacKey', 'generateKeyPair', 'publicKey', 'signDigest', 'verifyDigest', 'rsaEncrypt', 'rsaDecrypt', 'deriveSharedSecret', 'generateDataKeyPair', 'generateWrappedDataKey',
  'importKeyMaterial', 'unwrapDataKey', 'encryptAesGcm', 'decryptAesGcm', 'encryptAesCbc', 'decryptAesCbc', 'hmacSign', 'hmacVerify', 'randomBytes', 'destroyKey', 'countObjects',
  'listKeyObjects', 'inspectKeyObjects',
] as const satisfies ReadonlyArray<keyof Hsm>;

/**
 * Key-pair generation is slow by nature (RSA-4096 on SoftHSM2 took over 5 s in a test run), and a
 * listing of every object on the token (start-up reconciliation, `qkms orphans`) grows with the
 * token: these calls get at least this long before DependencyTimeoutException, whatever
 * QKMS_HSM_TIMEOUT_MS says.
 */
export const SLOW_HSM_CALLS: ReadonlySet<string> = new Set(['generateKeyPair', 'generateDataKeyPair', 'listKeyObjects']);
/** Of those, the ones that block the HSM thread while they run (key pairs are made on the libuv pool). */
export const SLOW_BLOCKING_CALLS: ReadonlySet<string> = new Set(['listKeyObjects']);
export const SLOW_CALL_TIMEOUT_MS = 60000;

/** The deadline of one HSM call. */
export function callTimeoutMs(method: string, timeoutMs: number): number {
  return SLOW_HSM_CALLS.has(method) ? Math.max(timeoutMs, SLOW_CALL_TIMEOUT_MS) : timeoutMs;
}

export type Hash = 'SHA1' | 'SHA224' | 'SHA256' | 'SHA384' | 'SHA512';

export interface HmacKeySpec {
  hash: Hash;
  bytes: number;
}

/** UNWRAP: a BYOK wrapping key pair (GetParametersForImport): the private key unwraps and decrypts with OAEP only. */
export type KeyPairUsage = 'SIGN_VERIFY' | 'ENCRYPT_DECRYPT' | 'KEY_AGREEMENT' | 'UNWRAP';

export type KeyPairSpec =
  | { family: 'RSA'; bits: 2048 | 3072 | 4096 }
  | { family: 'EC'; curve: 'P-256' | 'P-384' | 'P-521' | 'secp256k1' }
  | { family: 'EDWARDS'; curve: 'Ed25519' };

/**
 * A signature scheme over a digest of `hash` (PSS salt = digest length, MGF1 with the same hash);
 * EDDSA (pure Ed25519) signs the message itself, passed in place of the digest.
 */
export interface SigningScheme {
  scheme: 'RSA_PSS' | 'RSA_PKCS1' | 'ECDSA' | 'EDDSA';
  hash: 'SHA256' | 'SHA384' | 'SHA512';
}

/** GCM tag length; pkcs11js defaults tagBits to 0, i.e. no tag at all (pkcs11-and-clients.md §1.2). */
export const GCM_TAG_BYTES = 16;
