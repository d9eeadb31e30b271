import type { Operation } from './context';
import { assertDefaultName, checkNewKeyPolicy, policyName } from './key-policy';
import { Joi, keyIdSchema } from './shared-schemas';
import { useKey } from './use-key';

/** PutKeyPolicy: a new policy that parses, fits the quota and passes the lockout safety check. */
export const putKeyPolicy: Operation<{ KeyId: string; PolicyName?: string; Policy: string; BypassPolicyLockoutSafetyCheck?: boolean }> = {
  schema: Joi.object({
    KeyId: keyIdSchema.required(),
    PolicyName: policyName,
    Policy: Joi.string().min(1).max(131072).required(),
    BypassPolicyLockoutSafetyCheck: Joi.boolean(),
  }),
  async handle(input, ctx) {
    assertDefaultName(input.PolicyName);
    const { key } = await useKey(ctx, input.KeyId, { allowAlias: false, action: 'kms:PutKeyPolicy' });
    await checkNewKeyPolicy(input.Policy, ctx, { isBypassed: input.BypassPolicyLockoutSafetyCheck === true, keyId: key.keyId });
    await ctx.deps.keys.setPolicy(key.keyId, input.Policy);
    return undefined;
  },
};
