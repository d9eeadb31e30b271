import { authorize } from './authorize';
import type { Operation } from './context';
import { customKeyStoreIdSchema, noSuchCustomKeyStore } from './custom-key-stores';
import { Joi } from './shared-schemas';

/** DeleteCustomKeyStore: no custom key store exists here (custom-key-stores.ts). */
export const deleteCustomKeyStore: Operation<{ CustomKeyStoreId: string }> = {
  schema: Joi.object({ CustomKeyStoreId: customKeyStoreIdSchema.required() }),
  async handle(input, ctx) {
    await authorize(ctx, 'kms:DeleteCustomKeyStore');
    return noSuchCustomKeyStore(input.CustomKeyStoreId);
  },
};
