import type { KeyRecord } from '../domain/key-repository';
import { KMSInvalidStateException } from '../errors/kms-errors';
import type { Operation } from './context';
import { resolveKey, transitionKey } from './key-lookup';
import { Joi, keyIdSchema } from './shared-schemas';

const schema = Joi.object({ KeyId: keyIdSchema.required() });

/**
 * PendingDeletion -> Disabled, not the state before (kms-protocol.md §5); any other state is S4.
 * Compare-and-set against the scheduler: once it has claimed the key (its waiting period over),
 * a cancel is refused rather than answered 200 for a key that is being destroyed.
 */
export const cancelKeyDeletion: Operation<{ KeyId: string }> = {
  schema,
  async handle(input, ctx) {
    const resolved = await resolveKey(input.KeyId, ctx, { allowAlias: false, action: 'kms:CancelKeyDeletion' });
    const check = (key: KeyRecord) => {
      if (key.state !== 'PendingDeletion') throw KMSInvalidStateException.notPendingDeletion(resolved.arn);
      if (key.deletionStartedAt) throw KMSInvalidStateException.deletionUnderWay(resolved.arn);
    };
    await transitionKey(ctx, resolved, ['PendingDeletion'], check, { state: 'Disabled', deletionDate: null, pendingWindowDays: null });
    return { KeyId: resolved.arn };
  },
};
