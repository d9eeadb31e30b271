import { defaultKeyPolicy } from '../domain/policy';
import type { Operation } from './context';
import { assertDefaultName, policyName } from './key-policy';
import { Joi, keyIdSchema } from './shared-schemas';
import { useKey } from './use-key';

/** GetKeyPolicy: the key's policy, or the default one when none was set. */
export const getKeyPolicy: Operation<{ KeyId: string; PolicyName?: string }> = {
  schema: Joi.object({ KeyId: keyIdSchema.required(), PolicyName: policyName }),
  async handle(input, ctx) {
    assertDefaultName(input.PolicyName);
    const { key } = await useKey(ctx, input.KeyId, { allowAlias: false, action: 'kms:GetKeyPolicy' });
    return { Policy: key.policy ?? defaultKeyPolicy(ctx.deps.config.accountId), PolicyName: 'default' };
  },
};
