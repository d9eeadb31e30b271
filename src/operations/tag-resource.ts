import { assertNotPendingDeletion } from '../domain/key-state';
import { TagException } from '../errors/kms-errors';
import type { Operation } from './context';
import { checkTags } from './create-key';
import { Joi, keyIdSchema, tagsSchema } from './shared-schemas';
import { useKey } from './use-key';

const schema = Joi.object({ KeyId: keyIdSchema.required(), Tags: tagsSchema.required() });
const MAX_TAGS = 50;

/** An existing TagKey gets the new value; the key may hold at most 50 tags (kms-protocol.md §10). */
export const tagResource: Operation<{ KeyId: string; Tags: Array<{ TagKey: string; TagValue: string }> }> = {
  schema,
  async handle(input, ctx) {
    const { key, arn } = await useKey(ctx, input.KeyId, { allowAlias: false, action: 'kms:TagResource' });
    assertNotPendingDeletion(key.state, arn);
    const tags = checkTags(input.Tags);
    const existing = new Set((await ctx.deps.keys.listTags(key.keyId)).map((t) => t.key));
    if (new Set([...existing, ...tags.map((t) => t.key)]).size > MAX_TAGS) throw new TagException('Too many tags');
    await ctx.deps.keys.changeTags(key.keyId, tags, []);
    return undefined;
  },
};
