import type { Operation } from './context';
import { Joi, keyIdSchema, limitSchema, markerSchema } from './shared-schemas';
import { useKey } from './use-key';

/** ListKeyPolicies: `default` is the only policy name. */
export const listKeyPolicies: Operation<{ KeyId: string; Limit?: number; Marker?: string }> = {
  schema: Joi.object({ KeyId: keyIdSchema.required(), Limit: limitSchema, Marker: markerSchema }),
  async handle(input, ctx) {
    await useKey(ctx, input.KeyId, { allowAlias: false, action: 'kms:ListKeyPolicies' });
    return { PolicyNames: ['default'], Truncated: false };
  },
};
