import { AccessDeniedException, LimitExceededException, MalformedPolicyDocumentException, NotFoundException } from '../errors/kms-errors';
import { authorize, keyPolicyDocument } from './authorize';
import type { OperationContext } from './context';
import { Joi } from './shared-schemas';

/** What GetKeyPolicy, PutKeyPolicy and CreateKey share (kms-protocol.md §10 "Key policy"). `default` is the only policy name. */
const POLICY_MAX_BYTES = 32768; // quota; above it LimitExceededException [D]
export const policyName = Joi.string().min(1).max(128).pattern(/^[\w]+$/);

export function assertDefaultName(name: string | undefined): void {
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

