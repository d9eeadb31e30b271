import { DryRunOperationException } from '../errors/kms-errors';
import type { Hash } from '../hsm/hsm';
import type { Operation } from './context';
import { dryRunSchema, grantTokensSchema, Joi, keyIdSchema, macAlgorithmSchema } from './shared-schemas';
import { checkGrantTokens, useKey } from './use-key';

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
    await checkGrantTokens(input.GrantTokens, ctx);
    const purpose = { operation: 'GenerateMac', usage: 'GENERATE_VERIFY_MAC', algorithm: input.MacAlgorithm } as const;
    const { arn, material } = await useKey(ctx, input.KeyId, { allowAlias: true, action: 'kms:GenerateMac', state: 'usableForCrypto', purpose, material: 'current' });
    if (input.DryRun) throw DryRunOperationException.create();
    const mac = await ctx.deps.hsm.hmacSign(material.objects.hmac, input.Message, macHash(input.MacAlgorithm));
    return { Mac: mac.toString('base64'), MacAlgorithm: input.MacAlgorithm, KeyId: arn };
  },
};

/** HMAC_SHA_256 -> SHA256. */
export function macHash(algorithm: string): Hash {
  return algorithm.replace(/^HMAC_SHA_/, 'SHA') as Hash;
}
