import { DryRunOperationException } from '../errors/kms-errors';
import type { Operation } from './context';
import { keyForUse, macHash } from './key-use';
import { dryRunSchema, grantTokensSchema, Joi, keyIdSchema, macAlgorithmSchema } from './shared-schemas';

export interface GenerateMacInput {
  KeyId: string;
  Message: Buffer;
  MacAlgorithm: string;
  GrantTokens?: string[];
  DryRun?: boolean;
}

/** GenerateMac's members; VerifyMac's add the MAC. */
export const macSchema = {
  KeyId: keyIdSchema.required(),
  Message: Joi.blob().min(1).max(4096).required(),
  MacAlgorithm: macAlgorithmSchema.required(),
  GrantTokens: grantTokensSchema,
  DryRun: dryRunSchema,
};

/** HMAC in the HSM with a GENERATE_VERIFY_MAC key; the algorithm must be its spec's one [O]. */
export const generateMac: Operation<GenerateMacInput> = {
  schema: Joi.object(macSchema),
  async handle(input, ctx) {
    const key = await keyForUse(input, ctx, { operation: 'GenerateMac', action: 'kms:GenerateMac', usage: 'GENERATE_VERIFY_MAC', algorithm: input.MacAlgorithm });
    if (input.DryRun) throw DryRunOperationException.create();
    const mac = await ctx.deps.hsm.hmacSign(key.objects.hmac, input.Message, macHash(input.MacAlgorithm));
    return { Mac: mac.toString('base64'), MacAlgorithm: input.MacAlgorithm, KeyId: key.arn };
  },
};

