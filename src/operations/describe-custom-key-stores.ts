import { InvalidMarkerException } from '../errors/kms-errors';
import { authorize } from './authorize';
import type { Operation } from './context';
import { customKeyStoreIdSchema, customKeyStoreNameSchema, noSuchCustomKeyStore } from './custom-key-stores';
import { Joi, markerSchema } from './shared-schemas';

interface DescribeCustomKeyStoresInput {
  CustomKeyStoreId?: string;
  CustomKeyStoreName?: string;
  Limit?: number;
  Marker?: string;
}

/** DescribeCustomKeyStores: an empty list; a named store does not exist, and no marker was ever issued (custom-key-stores.ts). */
export const describeCustomKeyStores: Operation<DescribeCustomKeyStoresInput> = {
  schema: Joi.object({ CustomKeyStoreId: customKeyStoreIdSchema, CustomKeyStoreName: customKeyStoreNameSchema, Limit: Joi.number().integer().min(1).max(1000), Marker: markerSchema }),
  async handle(input, ctx) {
    await authorize(ctx, 'kms:DescribeCustomKeyStores');
    if (input.CustomKeyStoreId !== undefined) noSuchCustomKeyStore(input.CustomKeyStoreId);
    if (input.CustomKeyStoreName !== undefined) noSuchCustomKeyStore(input.CustomKeyStoreName);
    if (input.Marker !== undefined) throw InvalidMarkerException.create();
    return { CustomKeyStores: [], Truncated: false };
  },
};
