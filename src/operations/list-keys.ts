import { keyArn } from '../domain/arn';
import type { Operation } from './context';
import { Joi, limitSchema, markerSchema } from './shared-schemas';

interface ListKeysInput {
  Limit?: number;
  Marker?: string;
}

const schema = Joi.object({ Limit: limitSchema, Marker: markerSchema });
const MAX_LIMIT = 1000; // kms-protocol.md §8: ListKeys 1-1000, default 100
const DEFAULT_LIMIT = 100;

/** Every key in every state, in creation order. NextMarker only when Truncated (§8). */
export const listKeys: Operation<ListKeysInput> = {
  schema,
  async handle(input, ctx) {
    const { keys, markers, scope } = ctx.deps;
    const limit = Math.min(input.Limit ?? DEFAULT_LIMIT, MAX_LIMIT);
    const after = input.Marker === undefined ? 0 : await markers.decode('ListKeys', input.Marker);
    const page = await keys.listKeys(after, limit + 1);
    const isTruncated = page.length > limit;
    const shown = page.slice(0, limit);
    return {
      Keys: shown.map((k) => ({ KeyId: k.keyId, KeyArn: keyArn(scope, k.keyId) })),
      Truncated: isTruncated,
      ...(isTruncated && { NextMarker: await markers.encode('ListKeys', shown[shown.length - 1].position) }),
    };
  },
};
