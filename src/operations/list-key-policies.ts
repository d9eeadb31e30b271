import type { Operation } from './context';
import { resolveKey } from './key-lookup';
import { Joi, keyIdSchema, limitSchema, markerSchema } from './shared-schemas';

/** ListKeyPolicies: `default` is the only policy name. */
export const listKeyPolicies: Operation<{ KeyId: string; Limit?: number; Marker?: string }> = {
  schema: Joi.object({ KeyId: keyIdSchema.required(), Limit: limitSchema, Marker: markerSchema }),
  async handle(input, ctx) {
    await resolveKey(input.KeyId, ctx, { allowAlias: false, action: 'kms:ListKeyPolicies' });
    return { PolicyNames: ['default'], Truncated: false };
  },
};
