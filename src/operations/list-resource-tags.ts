import type { Operation } from './context';
import { paginate } from './paginate';
import { Joi, keyIdSchema, limitSchema, markerSchema } from './shared-schemas';
import { useKey } from './use-key';

const schema = Joi.object({ KeyId: keyIdSchema.required(), Limit: limitSchema, Marker: markerSchema });

/** Every key state; tags in key order. Limit 1-50, default 50 (kms-protocol.md §8). */
export const listResourceTags: Operation<{ KeyId: string; Limit?: number; Marker?: string }> = {
  schema,
  async handle(input, ctx) {
    const { key } = await useKey(ctx, input.KeyId, { allowAlias: false, action: 'kms:ListResourceTags' });
    const page = await paginate(ctx, `ListResourceTags/${key.keyId}`, input, { defaultLimit: 50, maxLimit: 50 }, async (after, limit) => {
      const all = (await ctx.deps.keys.listTags(key.keyId)).map((t, i) => ({ ...t, position: i + 1 }));
      return all.slice(after, after + limit);
    });
    return { Tags: page.items.map((t) => ({ TagKey: t.key, TagValue: t.value })), ...page.tail };
  },
};
