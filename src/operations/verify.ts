import { DryRunOperationException, KMSInvalidSignatureException } from '../errors/kms-errors';
import type { Operation } from './context';
import { Joi } from './shared-schemas';
import { signingInput, signSchema, type SignInput } from './sign';
import { checkGrantTokens, useKey } from './use-key';

interface VerifyInput extends SignInput {
  Signature: Buffer;
}

/** Verify in the HSM with the public key; a signature that does not verify is KMSInvalidSignatureException [D][O]. */
export const verify: Operation<VerifyInput> = {
  schema: Joi.object({ ...signSchema, Signature: Joi.blob().min(1).max(6144).required() }),
  async handle(input, ctx) {
    await checkGrantTokens(input.GrantTokens, ctx);
    const purpose = { operation: 'Verify', usage: 'SIGN_VERIFY', algorithm: input.SigningAlgorithm } as const;
    const { arn, material } = await useKey(ctx, input.KeyId, { allowAlias: true, action: 'kms:Verify', state: 'usableForCrypto', purpose, material: 'current' });
    const { scheme, digest } = signingInput(input.SigningAlgorithm, input.Message, input.MessageType);
    if (input.DryRun) throw DryRunOperationException.create();
    if (!(await ctx.deps.hsm.verifyDigest(material.objects.public, scheme, digest, input.Signature))) throw new KMSInvalidSignatureException();
    return { KeyId: arn, SignatureValid: true, SigningAlgorithm: input.SigningAlgorithm };
  },
};
