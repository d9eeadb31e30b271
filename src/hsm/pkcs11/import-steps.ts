import crypto from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { HsmError } from '../hsm-error';
import { ckrName, classifyCkr } from './ckr-table';
import { CURVE_OIDS } from './templates';

/**
 * The small steps of an import (import-ops.ts) that each meet a token's way of refusing: what it
 * means, and what QKMS answers. Found on SoftHSM2 and NSS softoken (docs/hsm/).
 */

/** Makes an object from the imported material with this template (C_UnwrapKey, or C_CreateObject where the gateway decoded it). */
export type Materialize = (template: pkcs11js.Template) => pkcs11js.Handle;

/**
 * Once the key's objects may exist, a failure is never one withKey retries with a fresh handle of
 * the wrapping key (CKR_KEY_HANDLE_INVALID and the like, read as a stale cached handle): the retry
 * would make the objects a second time under the same ids. It fails, and the intent rolls back.
 */
export function neverRetried<T>(body: () => T): T {
  try {
    return body();
  } catch (err) {
    if (classifyCkr(ckrName(err)) === 'key') throw new HsmError('internal', 'C_UnwrapKey', undefined, { cause: err });
    throw err;
  }
}

/**
 * A token that will not unwrap a private key into the template at all (NSS softoken 3.87 answers
 * an EC private key with CKR_TEMPLATE_INCOMPLETE, whatever the template) cannot import such
 * material: UnsupportedOperationException naming the code, not a device fault (500).
 */
export function refusedTemplateIsUnsupported(make: () => pkcs11js.Handle): pkcs11js.Handle {
  try {
    return make();
  } catch (err) {
    if (err instanceof HsmError && err.ckr === 'CKR_TEMPLATE_INCOMPLETE') throw new HsmError('unsupported', err.fn, err.ckr, { cause: err });
    throw err;
  }
}

/**
 * The check value of a secret the HSM just unwrapped, computed by `compute` with the key's own
 * mechanism; empty when the token refuses the key for that mechanism (SoftHSM2: an AES key that is
 * not 16, 24 or 32 bytes is CKR_MECHANISM_INVALID at C_EncryptInit, an HMAC key shorter than the
 * hash CKR_KEY_SIZE_RANGE at C_SignInit). The mechanism works with the token's own keys (capability
 * discovery), so it is the material that does not fit: the caller refuses an empty check value.
 */
export function checkValue(compute: () => Buffer): Buffer {
  try {
    return compute();
  } catch (err) {
    if (err instanceof HsmError && err.kind === 'unsupported') return Buffer.alloc(0);
    throw err;
  }
}

/**
 * C_UnwrapKey with the template, or without CKA_MODIFIABLE where the token refuses it there:
 * SoftHSM2 2.6.1 answers CKR_ATTRIBUTE_READ_ONLY to CKA_MODIFIABLE false on an unwrap and to
 * setting it afterwards, so its imported objects stay modifiable (docs/hsm/softhsm2.md). What
 * keeps the material in the HSM cannot be undone by a modification: CKA_SENSITIVE cannot be
 * cleared, nor CKA_EXTRACTABLE set.
 */
export function unwrapping(unwrap: Materialize): Materialize {
  return (template) => {
    try {
      return unwrap(template);
    } catch (err) {
      const isRefused = err instanceof HsmError && err.ckr === 'CKR_ATTRIBUTE_READ_ONLY';
      if (!isRefused || !template.some((a) => a.type === pkcs11js.CKA_MODIFIABLE)) throw err;
      return unwrap(template.filter((a) => a.type !== pkcs11js.CKA_MODIFIABLE));
    }
  };
}

/** The template with the material's value, for C_CreateObject: a secret's CKA_VALUE, or a PKCS#8 private key's components. */
export function withValue(template: pkcs11js.Template, value: Buffer): pkcs11js.Template {
  const objectClass = template.find((a) => a.type === pkcs11js.CKA_CLASS)?.value;
  if (objectClass !== pkcs11js.CKO_PRIVATE_KEY) return [...template, { type: pkcs11js.CKA_VALUE, value }];
  let jwk: crypto.JsonWebKey;
  try {
    jwk = crypto.createPrivateKey({ key: value, format: 'der', type: 'pkcs8' }).export({ format: 'jwk' });
  } catch (cause) {
    throw new HsmError('integrity', 'C_CreateObject', 'CKR_WRAPPED_KEY_INVALID', { cause });
  }
  const b = (v: string | undefined) => Buffer.from(v ?? '', 'base64url');
  // A private key of another type than the key's does not decode as its material (as C_UnwrapKey answers it).
  const keyType = template.find((a) => a.type === pkcs11js.CKA_KEY_TYPE)?.value;
  if (jwk.kty !== (keyType === pkcs11js.CKK_RSA ? 'RSA' : 'EC')) throw new HsmError('integrity', 'C_CreateObject', 'CKR_WRAPPED_KEY_INVALID', { cause: new Error(`private key of type ${jwk.kty}`) });
  if (jwk.kty === 'RSA') {
    const parts: Array<[number, string | undefined]> = [
      [pkcs11js.CKA_MODULUS, jwk.n], [pkcs11js.CKA_PUBLIC_EXPONENT, jwk.e], [pkcs11js.CKA_PRIVATE_EXPONENT, jwk.d], [pkcs11js.CKA_PRIME_1, jwk.p],
      [pkcs11js.CKA_PRIME_2, jwk.q], [pkcs11js.CKA_EXPONENT_1, jwk.dp], [pkcs11js.CKA_EXPONENT_2, jwk.dq], [pkcs11js.CKA_COEFFICIENT, jwk.qi],
    ];
    return [...template, ...parts.map(([type, v]) => ({ type, value: b(v) }))];
  }
  const oid = CURVE_OIDS[jwk.crv as keyof typeof CURVE_OIDS];
  if (jwk.kty !== 'EC' || !oid) throw new HsmError('integrity', 'C_CreateObject', 'CKR_WRAPPED_KEY_INVALID', { cause: new Error(`private key of type ${jwk.kty} ${jwk.crv ?? ''}`) });
  return [...template, { type: pkcs11js.CKA_EC_PARAMS, value: oid }, { type: pkcs11js.CKA_VALUE, value: b(jwk.d) }];
}

export function stripZeros(value: Buffer): Buffer {
  let i = 0;
  while (i < value.length - 1 && value[i] === 0) i++;
  return value.subarray(i);
}
