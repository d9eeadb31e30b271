import crypto from 'node:crypto';
import { HASH_BYTES, signingScheme } from '../domain/key-spec';
import { DryRunOperationException, UnsupportedOperationException, ValidationException } from '../errors/kms-errors';
import type { SigningScheme } from '../hsm/hsm';
import type { Operation } from './context';
import { dryRunSchema, grantTokensSchema, Joi, keyIdSchema, messageTypeSchema, signingAlgorithmSchema } from './shared-schemas';
import { checkGrantTokens, useKey } from './use-key';

export interface SignInput {
  KeyId: string;
  Message: Buffer;
  MessageType?: string;
  GrantTokens?: string[];
  SigningAlgorithm: string;
  DryRun?: boolean;
}

/** Sign's members; Verify's add the signature. */
export const signSchema = {
  KeyId: keyIdSchema.required(),
  Message: Joi.blob().min(1).max(4096).required(),
  MessageType: messageTypeSchema,
  GrantTokens: grantTokensSchema,
  SigningAlgorithm: signingAlgorithmSchema.required(),
  DryRun: dryRunSchema,
};

/** Sign with the private key in the HSM; ECDSA signatures DER-encoded, RSA raw (kms-protocol.md §6). */
export const sign: Operation<SignInput> = {
  schema: Joi.object(signSchema),
  async handle(input, ctx) {
    await checkGrantTokens(input.GrantTokens, ctx);
    const purpose = { operation: 'Sign', usage: 'SIGN_VERIFY', algorithm: input.SigningAlgorithm } as const;
    const { arn, material } = await useKey(ctx, input.KeyId, { allowAlias: true, action: 'kms:Sign', state: 'usableForCrypto', purpose, material: 'current' });
    const { scheme, digest } = signingInput(input.SigningAlgorithm, input.Message, input.MessageType);
    if (input.DryRun) throw DryRunOperationException.create();
    const signature = await ctx.deps.hsm.signDigest(material.objects.private, scheme, digest);
    return { KeyId: arn, Signature: signature.toString('base64'), SigningAlgorithm: input.SigningAlgorithm };
  },
};

/**
 * Sign and Verify work on a digest: RAW messages (≤ 4096 bytes) are hashed here with the
 * algorithm's hash — the message is what the caller sends, not a secret — and DIGEST messages must
 * be exactly the hash's length [O].
 */
export function signingInput(algorithm: string, message: Buffer, messageType = 'RAW'): { scheme: SigningScheme; digest: Buffer } {
  if (messageType === 'EXTERNAL_MU') throw new ValidationException(`MessageType EXTERNAL_MU is valid only with ML_DSA_SHAKE_256, not ${algorithm}.`);
  if (algorithm === 'ED25519_PH_SHA_512') throw new UnsupportedOperationException('ED25519_PH_SHA_512 (prehashed Ed25519) is not supported by this gateway; use ED25519_SHA_512.');
  const scheme = signingScheme(algorithm);
  if (scheme.scheme === 'EDDSA') {
    // Pure Ed25519 signs the message itself, so it needs the message [D: ED25519_SHA_512 requires RAW].
    if (messageType !== 'RAW') throw new ValidationException(`${algorithm} requires MessageType RAW.`);
    return { scheme, digest: message };
  }
  if (messageType === 'DIGEST') {
    if (message.length !== HASH_BYTES[scheme.hash]) throw new ValidationException(`Digest is invalid length for algorithm ${algorithm}.`);
    return { scheme, digest: message };
  }
  return { scheme, digest: crypto.createHash(scheme.hash.toLowerCase()).update(message).digest() };
}
