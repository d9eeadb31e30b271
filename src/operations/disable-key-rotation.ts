import type { Operation } from './context';
import { setKeyRotation } from './key-rotation';
import { Joi, keyIdSchema } from './shared-schemas';

/** DisableKeyRotation: no more automatic rotations; earlier material stays. */
export const disableKeyRotation: Operation<{ KeyId: string }> = {
  schema: Joi.object({ KeyId: keyIdSchema.required() }),
  handle: setKeyRotation('kms:DisableKeyRotation', () => null),
};
