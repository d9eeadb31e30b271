import { authorize } from './authorize';
import type { Operation } from './context';
import { customKeyStoreIdSchema, customKeyStoreNameSchema, noSuchCustomKeyStore } from './custom-key-stores';
import { Joi } from './shared-schemas';

/** UpdateCustomKeyStore: no custom key store exists here (custom-key-stores.ts). The other members are checked for shape only. */
export const updateCustomKeyStore: Operation<{ CustomKeyStoreId: string }> = {
  schema: Joi.object({ CustomKeyStoreId: customKeyStoreIdSchema.required(), NewCustomKeyStoreName: customKeyStoreNameSchema }),
  async handle(input, ctx) {
    await authorize(ctx, 'kms:UpdateCustomKeyStore');
    return noSuchCustomKeyStore(input.CustomKeyStoreId);
  },
};
