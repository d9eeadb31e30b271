import { nextRotationDate } from '../domain/key-lifecycle';
import type { Operation } from './context';
import { setKeyRotation } from './key-rotation';
import { Joi, keyIdSchema } from './shared-schemas';

/** EnableKeyRotation: automatic rotation every RotationPeriodInDays (90-2560, default 365). */
export const enableKeyRotation: Operation<{ KeyId: string; RotationPeriodInDays?: number }> = {
  schema: Joi.object({ KeyId: keyIdSchema.required(), RotationPeriodInDays: Joi.number().integer().min(90).max(2560) }),
  handle: setKeyRotation('kms:EnableKeyRotation', (ctx, periodDays = 365) => ({ periodDays, nextRotationDate: nextRotationDate(ctx.deps.clock(), periodDays) })),
};
