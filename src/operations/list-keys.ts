import { keyArn } from '../domain/arn';
import { authorize } from './authorize';
import type { Operation } from './context';
import { paginate } from './paginate';
import { Joi, limitSchema, markerSchema } from './shared-schemas';

interface ListKeysInput {
  Limit?: number;
  Marker?: string;
}

const schema = Joi.object({ Limit: limitSchema, Marker: markerSchema });

/** Every key in every state, in creation order. Limit 1-1000, default 100 (kms-protocol.md §8). */
export const listKeys: Operation<ListKeysInput> = {
  schema,
  async handle(input, ctx) {
    await authorize(ctx, 'kms:ListKeys');
    const page = await paginate(ctx, 'ListKeys', input, { defaultLimit: 100, maxLimit: 1000 }, (after, limit) => ctx.deps.keys.listKeys(after, limit));
    return { Keys: page.items.map((k) => ({ KeyId: k.keyId, KeyArn: keyArn(ctx.deps.scope, k.keyId) })), ...page.tail };
  },
};
