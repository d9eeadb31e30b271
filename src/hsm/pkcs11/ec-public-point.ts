import crypto from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { HsmError } from '../hsm-error';
import type { Connection } from './connection';
import { ephemeralDataKeyTemplate } from './templates';
import type { Session } from './token-access';

/** Node's names of the curves KMS imports. */
export const NODE_CURVES: Readonly<Record<string, string>> = { 'P-256': 'prime256v1', 'P-384': 'secp384r1', 'P-521': 'secp521r1', secp256k1: 'secp256k1' };

/**
 * 04 ‖ X ‖ Y of an EC private key the token holds without its point (PKCS#11 private key objects
 * carry none), found in the HSM: ECDH of `copy` (a session copy that may derive and sign) with the
 * curve's generator gives X (public, read); of the two points with that X, the one whose key
 * verifies a signature `copy` makes is the public key. Objects made here go to `scratch`.
 */
export function ecPublicPoint(ctx: { p11: pkcs11js.PKCS11; connection: Connection }, s: Session, key: { copy: pkcs11js.Handle; curve: string }, scratch: pkcs11js.Handle[]): Buffer {
  const { p11, connection } = ctx;
  const { copy, curve } = key;
  const generator = crypto.createECDH(NODE_CURVES[curve]);
  generator.setPrivateKey(Buffer.from([1]));
  const g = generator.getPublicKey();
  const fieldBytes = (g.length - 1) / 2;
  const ecdh = { mechanism: pkcs11js.CKM_ECDH1_DERIVE, parameter: { type: pkcs11js.CK_PARAMS_EC_DH, kdf: pkcs11js.CKD_NULL, publicData: g } as pkcs11js.ECDH1 };
  const xObject = connection.sessionObjectCreated(p11.C_DeriveKey(s, ecdh, copy, ephemeralDataKeyTemplate(fieldBytes)));
  scratch.push(xObject);
  const x = Buffer.from(p11.C_GetAttributeValue(s, xObject, [{ type: pkcs11js.CKA_VALUE }])[0].value);
  const message = crypto.randomBytes(32);
  p11.C_SignInit(s, { mechanism: pkcs11js.CKM_ECDSA }, copy);
  const signature = Buffer.from(p11.C_Sign(s, crypto.createHash('sha256').update(message).digest(), Buffer.alloc(256)));
  for (const prefix of [2, 3]) {
    const point = crypto.ECDH.convertKey(Buffer.concat([Buffer.from([prefix]), x]), NODE_CURVES[curve], undefined, undefined, 'uncompressed') as Buffer;
    const half = (point.length - 1) / 2;
    const candidate = crypto.createPublicKey({ key: { kty: 'EC', crv: curve, x: point.subarray(1, 1 + half).toString('base64url'), y: point.subarray(1 + half).toString('base64url') }, format: 'jwk' });
    if (crypto.verify('sha256', message, { key: candidate, dsaEncoding: 'ieee-p1363' }, signature)) return point;
  }
  throw new HsmError('internal', 'C_Sign', undefined, { cause: new Error(`no public point of ${curve} verifies the imported key's signature (field ${fieldBytes} bytes)`) });
}
