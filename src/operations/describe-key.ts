import type { Operation } from './context';
import { keyMetadata } from './key-metadata';
import { grantTokensSchema, Joi, keyIdSchema } from './shared-schemas';
import { checkGrantTokens, useKey } from './use-key';

interface DescribeKeyInput {
  KeyId: string;
  GrantTokens?: string[];
}

const schema = Joi.object({ KeyId: keyIdSchema.required(), GrantTokens: grantTokensSchema });

/** Works in every key state, PendingDeletion included (kms-protocol.md §10). */
export const describeKey: Operation<DescribeKeyInput> = {
  schema,
  async handle(input, ctx) {
    await checkGrantTokens(input.GrantTokens, ctx);
    const { key } = await useKey(ctx, input.KeyId, { allowAlias: true, action: 'kms:DescribeKey' });
    return { KeyMetadata: await keyMetadata(key, ctx.deps) };
  },
};
