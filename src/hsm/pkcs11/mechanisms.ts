import * as pkcs11js from 'pkcs11js';
import { GCM_TAG_BYTES } from '../hsm';

/**
 * RFC 5649 key wrap, as PKCS#11 v3.0 numbers it (NSS implements exact RFC 5649 under this number, and
 * RFC 3394 over PKCS#7 padding under CKM_AES_KEY_WRAP_PAD); capability discovery finds which of the
 * two a token gets right. Neither takes a parameter (SoftHSM rejects one).
 */
export const CKM_AES_KEY_WRAP_KWP = 0x210b;
export const HMAC_SHA256: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_SHA256_HMAC };
export const AES_KEY_GEN: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_AES_KEY_GEN };
export const GENERIC_SECRET_KEY_GEN: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN };

/**
 * CK_GCM_PARAMS via CK_PARAMS_GCM (25), which fills ulIvBits (type 3 leaves it uninitialised) and an
 * explicit 128-bit tag (pkcs11js defaults tagBits to 0 = no tag). pkcs11-and-clients.md §1.2.
 */
export function aesGcm(iv: Buffer, aad: Buffer): pkcs11js.Mechanism {
  return {
    mechanism: pkcs11js.CKM_AES_GCM,
    parameter: { type: pkcs11js.CK_PARAMS_GCM, iv, ivBits: iv.length * 8, aad, tagBits: GCM_TAG_BYTES * 8 } as pkcs11js.GcmParams,
  };
}

type SigningHash = 'SHA256' | 'SHA384' | 'SHA512';

/** CKM_SHA*_HMAC by hash, and the MAC length each gives. */
export const HMAC_BY_HASH: Record<'SHA224' | 'SHA256' | 'SHA384' | 'SHA512', { mechanism: number; bytes: number }> = {
  SHA224: { mechanism: pkcs11js.CKM_SHA224_HMAC, bytes: 28 },
  SHA256: { mechanism: pkcs11js.CKM_SHA256_HMAC, bytes: 32 },
  SHA384: { mechanism: pkcs11js.CKM_SHA384_HMAC, bytes: 48 },
  SHA512: { mechanism: pkcs11js.CKM_SHA512_HMAC, bytes: 64 },
};

/** DER DigestInfo prefixes (RFC 8017 §9.2 note 1): CKM_RSA_PKCS signs DigestInfo ‖ digest. */
export const DIGEST_INFO_PREFIX: Record<SigningHash, Buffer> = {
  SHA256: Buffer.from('3031300d060960864801650304020105000420', 'hex'),
  SHA384: Buffer.from('3041300d060960864801650304020205000430', 'hex'),
  SHA512: Buffer.from('3051300d060960864801650304020305000440', 'hex'),
};

const HASH_MECHANISMS: Record<SigningHash, { hashAlg: number; mgf: number; bytes: number }> = {
  SHA256: { hashAlg: pkcs11js.CKM_SHA256, mgf: pkcs11js.CKG_MGF1_SHA256, bytes: 32 },
  SHA384: { hashAlg: pkcs11js.CKM_SHA384, mgf: pkcs11js.CKG_MGF1_SHA384, bytes: 48 },
  SHA512: { hashAlg: pkcs11js.CKM_SHA512, mgf: pkcs11js.CKG_MGF1_SHA512, bytes: 64 },
};

/** RSASSA-PSS over a digest, MGF1 with the same hash, salt as long as the digest (as AWS KMS). */
export function rsaPss(hash: SigningHash): pkcs11js.Mechanism {
  const h = HASH_MECHANISMS[hash];
  return { mechanism: pkcs11js.CKM_RSA_PKCS_PSS, parameter: { type: pkcs11js.CK_PARAMS_RSA_PSS, hashAlg: h.hashAlg, mgf: h.mgf, saltLen: h.bytes } as pkcs11js.RsaPSS };
}

export const RSA_PKCS: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_RSA_PKCS };
export const ECDSA: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_ECDSA };
// PKCS#11 v3.0 numbers pkcs11js does not export (SoftHSM2 2.6.1 implements both).
export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
export const CKM_EDDSA = 0x1057;
export const CKK_EC_EDWARDS = 0x40;
export const EDDSA: pkcs11js.Mechanism = { mechanism: CKM_EDDSA };

/** RSAES-OAEP, MGF1 with the same hash, empty label (CKZ_DATA_SPECIFIED is not exported by pkcs11js: 1). */
export function rsaOaep(hash: 'SHA1' | 'SHA256'): pkcs11js.Mechanism {
  const [hashAlg, mgf] = hash === 'SHA1' ? [pkcs11js.CKM_SHA_1, pkcs11js.CKG_MGF1_SHA1] : [pkcs11js.CKM_SHA256, pkcs11js.CKG_MGF1_SHA256];
  return { mechanism: pkcs11js.CKM_RSA_PKCS_OAEP, parameter: { type: pkcs11js.CK_PARAMS_RSA_OAEP, hashAlg, mgf, source: 1 } as pkcs11js.RsaOAEP };
}

/** Raw RSA (m = c^d mod n, all k bytes): RSAES_OAEP_SHA_256 on tokens whose OAEP lacks SHA-256 (rsa-oaep-ops.ts). */
export const RSA_X_509: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_RSA_X_509 };

/** A mechanism's CKM_ name, for messages and the capability table (pkcs11js exports the v2.40 ones). */
export function mechanismName(mechanism: number): string {
  if (mechanism === CKM_AES_KEY_WRAP_KWP) return 'CKM_AES_KEY_WRAP_KWP';
  if (mechanism === CKM_EC_EDWARDS_KEY_PAIR_GEN) return 'CKM_EC_EDWARDS_KEY_PAIR_GEN';
  if (mechanism === CKM_EDDSA) return 'CKM_EDDSA';
  return MECHANISM_NAMES.get(mechanism) ?? `CKM_0x${mechanism.toString(16)}`;
}

const MECHANISM_NAMES = new Map<number, string>(
  Object.entries(pkcs11js)
    .filter(([k, v]) => k.startsWith('CKM_') && typeof v === 'number')
    .map(([k, v]) => [v as number, k]),
);
