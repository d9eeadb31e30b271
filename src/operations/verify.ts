import { DryRunOperationException, KMSInvalidSignatureException } from '../errors/kms-errors';
import type { Operation } from './context';
import { keyForUse, signingInput } from './key-use';
import { Joi } from './shared-schemas';
import { signSchema, type SignInput } from './sign';

interface VerifyInput extends SignInput {
  Signature: Buffer;
}

/** Verify in the HSM with the public key; a signature that does not verify is KMSInvalidSignatureException [D][O]. */
export const verify: Operation<VerifyInput> = {
  schema: Joi.object({ ...signSchema, Signature: Joi.blob().min(1).max(6144).required() }),
  async handle(input, ctx) {
    const key = await keyForUse(input, ctx, { operation: 'Verify', action: 'kms:Verify', usage: 'SIGN_VERIFY', algorithm: input.SigningAlgorithm });
    const { scheme, digest } = signingInput(input.SigningAlgorithm, input.Message, input.MessageType);
    if (input.DryRun) throw DryRunOperationException.create();
    if (!(await ctx.deps.hsm.verifyDigest(key.objects.public, scheme, digest, input.Signature))) throw new KMSInvalidSignatureException();
    return { KeyId: key.arn, SignatureValid: true, SigningAlgorithm: input.SigningAlgorithm };
  },
};
