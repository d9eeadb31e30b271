import { assertEnabledOrDisabled } from '../domain/key-state';
import type { Operation } from './context';
import { Joi, keyIdSchema } from './shared-schemas';
import { transitionKey } from './transition-key';
import { useKey } from './use-key';

interface KeyIdInput {
  KeyId: string;
}

const schema = Joi.object({ KeyId: keyIdSchema.required() });

/** EnableKey and DisableKey: idempotent; key id or ARN only; PendingDeletion -> S3, PendingImport -> S5 (kms-protocol.md §5). */
export function setKeyEnabled(isEnabled: boolean): Operation<KeyIdInput> {
  const action = isEnabled ? 'kms:EnableKey' : 'kms:DisableKey';
  return {
    schema,
    async handle(input, ctx) {
      const resolved = await useKey(ctx, input.KeyId, { allowAlias: false, action });
      // Only from Enabled or Disabled: a key scheduled for deletion meanwhile is not brought back.
      await transitionKey(ctx, resolved, ['Enabled', 'Disabled'], (key) => assertEnabledOrDisabled(key.state, resolved.arn), {
        state: isEnabled ? 'Enabled' : 'Disabled',
        deletionDate: null,
        pendingWindowDays: null,
      });
      return undefined;
    },
  };
}
