import crypto from 'node:crypto';
import type { AlgorithmSpec } from '@aws-sdk/client-kms';
import { registerSecret } from './secrets';

/**
 * The caller's side of BYOK, as the AWS documentation has it: the material encrypted under the
 * public key GetParametersForImport gave (RSAES-OAEP, MGF1 with the same hash), or for RSA_AES_KEY_WRAP_*
 * an AES-256 key so encrypted followed by the material under it (RFC 5649). The material is
 * registered for the log scan (zz-log-scan.test.ts), which looks for it in every log and audit file.
 */
export function wrapKeyMaterial(publicKeyDer: Uint8Array, algorithm: AlgorithmSpec, material: Buffer): Buffer {
  registerSecret(material);
  const key = crypto.createPublicKey({ key: Buffer.from(publicKeyDer), format: 'der', type: 'spki' });
  const oaep = (data: Buffer) => crypto.publicEncrypt({ key, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: algorithm.endsWith('SHA_1') ? 'sha1' : 'sha256' }, data);
  if (algorithm.startsWith('RSAES_OAEP')) return oaep(material);
  const aesKey = crypto.randomBytes(32);
  const kwp = crypto.createCipheriv('id-aes256-wrap-pad', aesKey, Buffer.from('A65959A6', 'hex'));
  return Buffer.concat([oaep(aesKey), kwp.update(material), kwp.final()]);
}
