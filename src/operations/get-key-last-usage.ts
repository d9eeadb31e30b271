import { epochSeconds, type Operation } from './context';
import { Joi, keyIdSchema } from './shared-schemas';
import { useKey } from './use-key';

/**
 * GetKeyLastUsage: the key's last successful cryptographic operation (domain/key-usage.ts), with
 * its time and request id; empty when it has none since tracking began, which is when this store
 * began recording usage or the key was created, whichever is later. No CloudTrailEventId: there is
 * no CloudTrail here (the audit trail's record carries the request id). Key id or ARN only, in
 * every key state.
 */
export const getKeyLastUsage: Operation<{ KeyId: string }> = {
  schema: Joi.object({ KeyId: keyIdSchema.required() }),
  async handle(input, ctx) {
    const { key } = await useKey(ctx, input.KeyId, { allowAlias: false, action: 'kms:GetKeyLastUsage' });
    const stored = await ctx.deps.keys.getKeyUsage(key.keyId);
    const mine = ctx.deps.usage?.unwritten(key.keyId, ctx.deps.scope.region);
    const last = mine && (!stored.usage || mine.at > stored.usage.at) ? mine : stored.usage;
    const trackingStart = stored.trackingStartedAt > key.createdAt ? stored.trackingStartedAt : key.createdAt;
    return {
      KeyId: key.keyId,
      KeyLastUsage: last ? { Operation: last.operation, Timestamp: epochSeconds(last.at), KmsRequestId: last.requestId } : {},
      TrackingStartDate: epochSeconds(trackingStart),
      KeyCreationDate: epochSeconds(key.createdAt),
    };
  },
};
