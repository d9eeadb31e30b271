import { defaultKeyPolicy } from '../domain/policy';
import { AccessDeniedException, LimitExceededException, MalformedPolicyDocumentException, NotFoundException } from '../errors/kms-errors';
import { authorize, keyPolicyDocument } from './authorize';
import type { Operation, OperationContext } from './context';
import { resolveKey } from './key-lookup';
import { Joi, keyIdSchema, limitSchema, markerSchema } from './shared-schemas';

/** GetKeyPolicy, PutKeyPolicy, ListKeyPolicies (kms-protocol.md §10 "Key policy"). `default` is the only policy name. */
const POLICY_MAX_BYTES = 32768; // quota; above it LimitExceededException [D]
const policyName = Joi.string().min(1).max(128).pattern(/^[\w]+$/);

function assertDefaultName(name: string | undefined): void {
  if (name !== undefined && name !== 'default') throw new NotFoundException(`No such policy exists: ${name}. The only key policy name is default.`);
}

/**
 * A new key policy must parse, fit the quota, and — unless BypassPolicyLockoutSafetyCheck — still
 * let the caller change it later, as AWS's lockout safety check demands.
 */
export async function checkNewKeyPolicy(policy: string, ctx: OperationContext, options: { isBypassed: boolean; keyId?: string }): Promise<void> {
  if (Buffer.byteLength(policy) > POLICY_MAX_BYTES) throw new LimitExceededException(`The key policy exceeds the ${POLICY_MAX_BYTES}-byte quota.`);
  keyPolicyDocument(policy);
  if (options.isBypassed) return;
  const probe = { keyId: options.keyId ?? '00000000-0000-4000-8000-000000000000', policy } as Parameters<typeof authorize>[2];
  try {
    await authorize(ctx, 'kms:PutKeyPolicy', probe);
  } catch (err) {
    if (!(err instanceof AccessDeniedException)) throw err;
    throw new MalformedPolicyDocumentException('The new key policy will not allow you to update the key policy in the future.');
  }
}

export const getKeyPolicy: Operation<{ KeyId: string; PolicyName?: string }> = {
  schema: Joi.object({ KeyId: keyIdSchema.required(), PolicyName: policyName }),
  async handle(input, ctx) {
    assertDefaultName(input.PolicyName);
    const { key } = await resolveKey(input.KeyId, ctx, { allowAlias: false, action: 'kms:GetKeyPolicy' });
    return { Policy: key.policy ?? defaultKeyPolicy(ctx.deps.config.accountId), PolicyName: 'default' };
  },
};

export const putKeyPolicy: Operation<{ KeyId: string; PolicyName?: string; Policy: string; BypassPolicyLockoutSafetyCheck?: boolean }> = {
  schema: Joi.object({
    KeyId: keyIdSchema.required(),
    PolicyName: policyName,
    Policy: Joi.string().min(1).max(131072).required(),
    BypassPolicyLockoutSafetyCheck: Joi.boolean(),
  }),
  async handle(input, ctx) {
    assertDefaultName(input.PolicyName);
    const { key } = await resolveKey(input.KeyId, ctx, { allowAlias: false, action: 'kms:PutKeyPolicy' });
    await checkNewKeyPolicy(input.Policy, ctx, { isBypassed: input.BypassPolicyLockoutSafetyCheck === true, keyId: key.keyId });
    await ctx.deps.keys.setPolicy(key.keyId, input.Policy);
    return undefined;
  },
};

export const listKeyPolicies: Operation<{ KeyId: string; Limit?: number; Marker?: string }> = {
  schema: Joi.object({ KeyId: keyIdSchema.required(), Limit: limitSchema, Marker: markerSchema }),
  async handle(input, ctx) {
    await resolveKey(input.KeyId, ctx, { allowAlias: false, action: 'kms:ListKeyPolicies' });
    return { PolicyNames: ['default'], Truncated: false };
  },
};
