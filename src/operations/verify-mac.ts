import { DryRunOperationException, KMSInvalidMacException } from '../errors/kms-errors';
import type { Operation } from './context';
import { macHash, macSchema, type GenerateMacInput } from './generate-mac';
import { Joi } from './shared-schemas';
import { checkGrantTokens, useKey } from './use-key';

interface VerifyMacInput extends GenerateMacInput {
  Mac: Buffer;
}

/** The HSM computes the MAC again (C_Sign) and it is compared in constant time; one that does not verify is KMSInvalidMacException with no message [O]. */
export const verifyMac: Operation<VerifyMacInput> = {
  schema: Joi.object({ ...macSchema, Mac: Joi.blob().min(1).max(6144).required() }),
  async handle(input, ctx) {
    await checkGrantTokens(input.GrantTokens, ctx);
    const purpose = { operation: 'VerifyMac', usage: 'GENERATE_VERIFY_MAC', algorithm: input.MacAlgorithm } as const;
    const { arn, material } = await useKey(ctx, input.KeyId, { allowAlias: true, action: 'kms:VerifyMac', state: 'usableForCrypto', purpose, material: 'current' });
    if (input.DryRun) throw DryRunOperationException.create();
    if (!(await ctx.deps.hsm.hmacVerify(material.objects.hmac, input.Message, input.Mac, macHash(input.MacAlgorithm)))) throw new KMSInvalidMacException();
    return { KeyId: arn, MacValid: true, MacAlgorithm: input.MacAlgorithm };
  },
};
