import { UnsupportedOperationException } from '../errors/kms-errors';
import type { OperationContext } from './context';
import { useKey, type ResolvedKey } from './use-key';

/**
 * The multi-Region primary key that ReplicateKey and UpdatePrimaryRegion name (kms-protocol.md §10
 * "Multi-Region keys"): a single-Region key or a replica is UnsupportedOperationException (our
 * wording: AWS's messages are not recorded).
 */
export async function primaryKey(ctx: OperationContext, keyId: string, action: string): Promise<ResolvedKey> {
  const resolved = await useKey(ctx, keyId, { allowAlias: false, action });
  const { key, arn } = resolved;
  if (key.primaryRegion === undefined) throw new UnsupportedOperationException(`${arn} is not a multi-Region key.`);
  if (key.primaryRegion !== ctx.deps.scope.region) {
    throw new UnsupportedOperationException(`${arn} is not a multi-Region primary key: its primary is in ${key.primaryRegion}.`);
  }
  return resolved;
}
