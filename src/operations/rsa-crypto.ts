import type { EncryptionContext } from '../domain/encryption-context';
import type { KeyRecord } from '../domain/key-repository';
import { capabilityProblem, rsaOaepKeyProblem } from '../hsm/capabilities';
import type { Hsm, ObjectRef } from '../hsm/hsm';
import { assertUsageAndAlgorithm, HASH_BYTES, SUPPORTED_SPECS } from '../domain/key-spec';
import { UnsupportedOperationException, ValidationException } from '../errors/kms-errors';
import type { OperationContext } from './context';
import { currentMaterial } from './use-key';

/** An RSA key of usage ENCRYPT_DECRYPT: Encrypt and Decrypt take the RSAES_OAEP_* path. */
export function isRsaEncryptionKey(key: KeyRecord): boolean {
  return key.keyUsage === 'ENCRYPT_DECRYPT' && SUPPORTED_SPECS[key.keySpec].material.family === 'RSA';
}

/**
 * The OAEP hash for an RSA Encrypt/Decrypt, after the checks in AWS's order: an algorithm of the
 * key (InvalidKeyUsageException; SYMMETRIC_DEFAULT when omitted), no encryption context (asymmetric
 * keys take none [D]), the plaintext's size when there is one (Encrypt: ValidationException before
 * anything this HSM lacks, as AWS checks it), then one the token can do (capability discovery) with
 * this key: where the token does OAEP-SHA-256 as raw RSA (SoftHSM2), keys made before that cannot,
 * and Encrypt refuses as Decrypt does, never making a ciphertext that would not decrypt.
 */
export async function oaepFor(
  key: KeyRecord,
  arn: string,
  operation: string,
  request: { algorithm?: string; context?: EncryptionContext; plaintext?: Buffer },
  ctx: OperationContext,
): Promise<{ hash: 'SHA1' | 'SHA256'; privateKey: ObjectRef; publicKey: ObjectRef }> {
  const algorithm = request.algorithm ?? 'SYMMETRIC_DEFAULT';
  assertUsageAndAlgorithm(key, arn, operation, 'ENCRYPT_DECRYPT', algorithm);
  if (request.context && Object.keys(request.context).length > 0) {
    throw new ValidationException('EncryptionContext is not supported with asymmetric KMS keys.');
  }
  const hash = algorithm === 'RSAES_OAEP_SHA_1' ? 'SHA1' : 'SHA256';
  if (request.plaintext) assertOaepPlaintextFits(key, algorithm, hash, request.plaintext);
  const caps = ctx.deps.hsm.capabilities();
  const problem = capabilityProblem(caps, hash === 'SHA1' ? 'rsa-oaep-sha1' : 'rsa-oaep-sha256');
  if (problem) throw new UnsupportedOperationException(`${algorithm}: ${problem}.`);
  const { objects } = await currentMaterial(ctx, key);
  const keyProblem = hash === 'SHA256' ? await oaepKeyProblem(ctx, objects.private) : undefined;
  if (keyProblem) throw new UnsupportedOperationException(`${algorithm}: ${keyProblem}.`);
  return { hash, privateKey: objects.private, publicKey: objects.public };
}

/**
 * What the token says about each RSA private key, as far as OAEP-SHA-256 goes, per Hsm and object
 * id: asked once (its CKA_ALLOWED_MECHANISMS cannot change: CKA_MODIFIABLE is false) and only on
 * tokens where the answer can differ between keys (TokenCapabilities.rsaOaepSha256 'raw-rsa').
 */
const oaepKeyVerdicts = new WeakMap<Hsm, Map<string, string | null>>();

async function oaepKeyProblem(ctx: OperationContext, privateKey: ObjectRef): Promise<string | undefined> {
  const { hsm } = ctx.deps;
  const caps = hsm.capabilities();
  if (caps.rsaOaepSha256 !== 'raw-rsa') return undefined;
  const verdicts = oaepKeyVerdicts.get(hsm) ?? new Map<string, string | null>();
  oaepKeyVerdicts.set(hsm, verdicts);
  const known = verdicts.get(privateKey.id);
  if (known !== undefined) return known ?? undefined;
  const facts = (await hsm.inspectKeyObjects(privateKey)).filter((f) => f.objectClass === 'CKO_PRIVATE_KEY');
  // No private key object (or several): not this check's verdict; the HSM call answers for it.
  if (facts.length !== 1) return undefined;
  const problem = rsaOaepKeyProblem(caps, facts[0]);
  verdicts.set(privateKey.id, problem ?? null);
  return problem;
}

/** (modulus bytes) − 2·hashLen − 2, with AWS's message beyond it [O]. */
export function assertOaepPlaintextFits(key: KeyRecord, algorithm: string, hash: 'SHA1' | 'SHA256', plaintext: Buffer): void {
  const material = SUPPORTED_SPECS[key.keySpec].material;
  const limit = (material.family === 'RSA' ? material.bits / 8 : 0) - 2 * HASH_BYTES[hash] - 2;
  if (plaintext.length > limit) throw new ValidationException(`Algorithm ${algorithm} and key spec ${key.keySpec} cannot encrypt data larger than ${limit} bytes.`);
}
