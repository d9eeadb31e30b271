import { assertNotPendingDeletion } from '../domain/key-state';
import type { Operation } from './context';
import { Joi, keyIdSchema } from './shared-schemas';
import { useKey } from './use-key';

const schema = Joi.object({ KeyId: keyIdSchema.required(), TagKeys: Joi.array().items(Joi.string().min(1).max(128)).required() });

/** Removing a tag key the key does not have is not an error [U]. */
export const untagResource: Operation<{ KeyId: string; TagKeys: string[] }> = {
  schema,
  async handle(input, ctx) {
    const { key, arn } = await useKey(ctx, input.KeyId, { allowAlias: false, action: 'kms:UntagResource' });
    assertNotPendingDeletion(key.state, arn);
    await ctx.deps.keys.changeTags(key.keyId, [], input.TagKeys);
    return undefined;
  },
};
