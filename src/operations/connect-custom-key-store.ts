import { authorize } from './authorize';
import type { Operation } from './context';
import { customKeyStoreIdSchema, noSuchCustomKeyStore } from './custom-key-stores';
import { Joi } from './shared-schemas';

/** ConnectCustomKeyStore: no custom key store exists here (custom-key-stores.ts). */
export const connectCustomKeyStore: Operation<{ CustomKeyStoreId: string }> = {
  schema: Joi.object({ CustomKeyStoreId: customKeyStoreIdSchema.required() }),
  async handle(input, ctx) {
    await authorize(ctx, 'kms:ConnectCustomKeyStore');
    return noSuchCustomKeyStore(input.CustomKeyStoreId);
  },
};
