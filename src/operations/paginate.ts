import type { OperationContext } from './context';

/**
 * One page of a listing (kms-protocol.md §8): Limit capped at the operation's maximum, the Marker
 * checked by the HSM-keyed MarkerCodec (InvalidMarkerException when forged), `Truncated` always,
 * and `NextMarker` only when there is more — the JS SDK's paginator loops forever otherwise.
 */
export async function paginate<T extends { position: number }>(
  ctx: OperationContext,
  listing: string,
  input: { Limit?: number; Marker?: string },
  limits: { defaultLimit: number; maxLimit: number },
  fetch: (afterPosition: number, limit: number) => Promise<T[]>,
): Promise<{ items: T[]; tail: { Truncated: boolean; NextMarker?: string } }> {
  const limit = Math.min(input.Limit ?? limits.defaultLimit, limits.maxLimit);
  const after = input.Marker === undefined ? 0 : await ctx.deps.markers.decode(listing, input.Marker);
  const fetched = await fetch(after, limit + 1);
  const items = fetched.slice(0, limit);
  if (fetched.length <= limit) return { items, tail: { Truncated: false } };
  return { items, tail: { Truncated: true, NextMarker: await ctx.deps.markers.encode(listing, items[items.length - 1].position) } };
}
