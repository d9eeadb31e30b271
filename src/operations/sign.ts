import { DryRunOperationException } from '../errors/kms-errors';
import type { Operation } from './context';
import { keyForUse, signingInput } from './key-use';
import { dryRunSchema, grantTokensSchema, Joi, keyIdSchema, messageTypeSchema, signingAlgorithmSchema } from './shared-schemas';

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
    const key = await keyForUse(input, ctx, { operation: 'Sign', action: 'kms:Sign', usage: 'SIGN_VERIFY', algorithm: input.SigningAlgorithm });
    const { scheme, digest } = signingInput(input.SigningAlgorithm, input.Message, input.MessageType);
    if (input.DryRun) throw DryRunOperationException.create();
    const signature = await ctx.deps.hsm.signDigest(key.objects.private, scheme, digest);
    return { KeyId: key.arn, Signature: signature.toString('base64'), SigningAlgorithm: input.SigningAlgorithm };
  },
};

