import * as pkcs11js from 'pkcs11js';

/** Every CKA_* policy for objects QKMS creates, in one place (docs/crypto.md §Key objects). */

function allowedMechanisms(...mechs: number[]): Buffer {
  // CK_MECHANISM_TYPE is a CK_ULONG: 8 bytes little-endian on the 64-bit Linux targets we support.
  const buf = Buffer.alloc(8 * mechs.length);
  mechs.forEach((m, i) => buf.writeBigUInt64LE(BigInt(m), i * 8));
  return buf;
}

const longLivedSecret = (label: string): pkcs11js.Template => [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
  { type: pkcs11js.CKA_TOKEN, value: true },
  { type: pkcs11js.CKA_PRIVATE, value: true },
  { type: pkcs11js.CKA_SENSITIVE, value: true },
  { type: pkcs11js.CKA_EXTRACTABLE, value: false },
  { type: pkcs11js.CKA_MODIFIABLE, value: false },
  { type: pkcs11js.CKA_LABEL, value: label },
  { type: pkcs11js.CKA_ID, value: Buffer.from(label, 'utf8') },
];

const USAGES = {
  wrap: pkcs11js.CKA_WRAP,
  unwrap: pkcs11js.CKA_UNWRAP,
  encrypt: pkcs11js.CKA_ENCRYPT,
  decrypt: pkcs11js.CKA_DECRYPT,
  sign: pkcs11js.CKA_SIGN,
  verify: pkcs11js.CKA_VERIFY,
  derive: pkcs11js.CKA_DERIVE,
};

/** Every usage attribute set explicitly (token defaults differ between vendors): true only for `allowed`. */
function usages(...allowed: Array<keyof typeof USAGES>): pkcs11js.Template {
  return Object.entries(USAGES).map(([name, type]) => ({ type, value: allowed.includes(name as keyof typeof USAGES) }));
}

/** A KMS key's AES-256 material: wraps data keys (KWP, or GCM where supported) and GCM-encrypts. */
export function kekTemplate(label: string): pkcs11js.Template {
  return [
    ...longLivedSecret(label),
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
    ...usages('wrap', 'unwrap', 'encrypt', 'decrypt'),
    { type: pkcs11js.CKA_ALLOWED_MECHANISMS, value: allowedMechanisms(pkcs11js.CKM_AES_KEY_WRAP_PAD, pkcs11js.CKM_AES_GCM) },
  ];
}

/** The HMAC-SHA-256 key that authenticates header, context and wrapped key of KWP blobs. */
export function macKeyTemplate(label: string): pkcs11js.Template {
  return [
    ...longLivedSecret(label),
    // SoftHSM2 generates HMAC keys only as CKK_GENERIC_SECRET (pkcs11-and-clients.md §2.1).
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
    { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
    ...usages('sign', 'verify'),
    { type: pkcs11js.CKA_ALLOWED_MECHANISMS, value: allowedMechanisms(pkcs11js.CKM_SHA256_HMAC) },
  ];
}

/**
 * A data key: a session object that lives for one call. It must be readable (SENSITIVE false) and
 * wrappable (EXTRACTABLE true) because GenerateDataKey returns it to the caller.
 */
export function ephemeralDataKeyTemplate(lengthBytes?: number): pkcs11js.Template {
  const t: pkcs11js.Template = [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
    { type: pkcs11js.CKA_TOKEN, value: false },
    { type: pkcs11js.CKA_SENSITIVE, value: false },
    { type: pkcs11js.CKA_EXTRACTABLE, value: true },
  ];
  if (lengthBytes !== undefined) t.push({ type: pkcs11js.CKA_VALUE_LEN, value: lengthBytes });
  return t;
}
