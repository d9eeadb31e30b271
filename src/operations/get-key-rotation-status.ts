import { epochSeconds, type Operation } from './context';
import { rotatableKey } from './key-rotation';
import { Joi, keyIdSchema } from './shared-schemas';

/** GetKeyRotationStatus: in every key state (a choice, README "Operations and errors"). */
export const getKeyRotationStatus: Operation<{ KeyId: string }> = {
  schema: Joi.object({ KeyId: keyIdSchema.required() }),
  async handle(input, ctx) {
    const { key, arn } = await rotatableKey(input.KeyId, ctx, 'kms:GetKeyRotationStatus');
    return {
      KeyRotationEnabled: key.rotation !== undefined,
      KeyId: arn,
      ...(key.rotation && { RotationPeriodInDays: key.rotation.periodDays, NextRotationDate: epochSeconds(key.rotation.nextRotationDate) }),
    };
  },
};
