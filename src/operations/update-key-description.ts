import { assertNotPendingDeletion } from '../domain/key-state';
import type { Operation } from './context';
import { Joi, keyIdSchema } from './shared-schemas';
import { useKey } from './use-key';

const schema = Joi.object({ KeyId: keyIdSchema.required(), Description: Joi.string().min(0).max(8192).allow('').required() });

/** An empty Description is allowed; PendingDeletion is S3 (kms-protocol.md §5). */
export const updateKeyDescription: Operation<{ KeyId: string; Description: string }> = {
  schema,
  async handle(input, ctx) {
    const { key, arn } = await useKey(ctx, input.KeyId, { allowAlias: false, action: 'kms:UpdateKeyDescription' });
    assertNotPendingDeletion(key.state, arn);
    await ctx.deps.keys.setDescription(key.keyId, input.Description);
    return undefined;
  },
};
