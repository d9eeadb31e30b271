import { DryRunOperationException, KMSInvalidMacException } from '../errors/kms-errors';
import type { Operation } from './context';
import { macSchema, type GenerateMacInput } from './generate-mac';
import { keyForUse, macHash } from './key-use';
import { Joi } from './shared-schemas';

interface VerifyMacInput extends GenerateMacInput {
  Mac: Buffer;
}

/** The HSM computes the MAC again (C_Sign) and it is compared in constant time; one that does not verify is KMSInvalidMacException with no message [O]. */
export const verifyMac: Operation<VerifyMacInput> = {
  schema: Joi.object({ ...macSchema, Mac: Joi.blob().min(1).max(6144).required() }),
  async handle(input, ctx) {
    const key = await keyForUse(input, ctx, { operation: 'VerifyMac', action: 'kms:VerifyMac', usage: 'GENERATE_VERIFY_MAC', algorithm: input.MacAlgorithm });
    if (input.DryRun) throw DryRunOperationException.create();
    if (!(await ctx.deps.hsm.hmacVerify(key.objects.hmac, input.Message, input.Mac, macHash(input.MacAlgorithm)))) throw new KMSInvalidMacException();
    return { KeyId: key.arn, MacValid: true, MacAlgorithm: input.MacAlgorithm };
  },
};
