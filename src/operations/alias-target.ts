import { LimitExceededException } from '../errors/kms-errors';
import type { OperationContext } from './context';
import { useKey, type ResolvedKey } from './use-key';

export const ALIASES_PER_KEY = 50; // kms-protocol.md §4, LimitExceededException above it

/**
 * CreateAlias and UpdateAlias targets: key id or ARN (never an alias), not pending deletion, under
 * the quota. The store checks the quota again as it writes: another request may take the last place.
 */
export async function aliasTarget(targetKeyId: string, ctx: OperationContext, action: string): Promise<ResolvedKey> {
  const target = await useKey(ctx, targetKeyId, { allowAlias: false, action, state: 'notPendingDeletion' });
  if ((await ctx.deps.keys.countAliases(target.key.keyId)) >= ALIASES_PER_KEY) {
    throw aliasQuotaExceeded(target.arn);
  }
  return target;
}

export function aliasQuotaExceeded(keyArn: string): LimitExceededException {
  return new LimitExceededException(`${keyArn} already has the maximum of ${ALIASES_PER_KEY} aliases.`);
}
