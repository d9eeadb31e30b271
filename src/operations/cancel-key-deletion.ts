import { KMSInvalidStateException } from '../errors/kms-errors';
import type { Operation } from './context';
import { resolveKey } from './key-lookup';
import { Joi, keyIdSchema } from './shared-schemas';

const schema = Joi.object({ KeyId: keyIdSchema.required() });

/** PendingDeletion -> Disabled, not the state before (kms-protocol.md §5); any other state is S4. */
export const cancelKeyDeletion: Operation<{ KeyId: string }> = {
  schema,
  async handle(input, ctx) {
    const { key, arn } = await resolveKey(input.KeyId, ctx, { allowAlias: false, action: 'kms:CancelKeyDeletion' });
    if (key.state !== 'PendingDeletion') throw KMSInvalidStateException.notPendingDeletion(arn);
    await ctx.deps.keys.setState(key.keyId, { state: 'Disabled', deletionDate: null, pendingWindowDays: null });
    return { KeyId: arn };
  },
};
