import { DryRunOperationException, InvalidGrantIdException } from '../errors/kms-errors';
import type { Operation } from './context';
import { grantIdSchema } from './retire-grant';
import { dryRunSchema, Joi, keyIdSchema } from './shared-schemas';
import { useKey } from './use-key';

/** RevokeGrant: the key policy decides (kms:RevokeGrant); an unknown grant is InvalidGrantIdException. */
export const revokeGrant: Operation<{ KeyId: string; GrantId: string; DryRun?: boolean }> = {
  schema: Joi.object({ KeyId: keyIdSchema.required(), GrantId: grantIdSchema.required(), DryRun: dryRunSchema }),
  async handle(input, ctx) {
    const { key } = await useKey(ctx, input.KeyId, { allowAlias: false, action: 'kms:RevokeGrant' });
    const grant = await ctx.deps.keys.getGrant(input.GrantId);
    if (!grant || grant.keyId !== key.keyId) throw InvalidGrantIdException.notFound(input.GrantId);
    if (input.DryRun) throw DryRunOperationException.create();
    await ctx.deps.keys.deleteGrant(input.GrantId);
    return undefined;
  },
};
