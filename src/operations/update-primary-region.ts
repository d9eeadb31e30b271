import { keyArn } from '../domain/arn';
import { assertNotPendingDeletion } from '../domain/key-state';
import { NotFoundException, UnsupportedOperationException } from '../errors/kms-errors';
import { inRegion, type Operation } from './context';
import { primaryKey } from './multi-region';
import { Joi, keyIdSchema, regionSchema } from './shared-schemas';
import { useKey } from './use-key';

/**
 * UpdatePrimaryRegion, called in the primary's region: the replica in PrimaryRegion becomes the
 * primary and this key a replica, as one compare-and-set on every record of the key id. AWS shows
 * both keys Updating for a few seconds; here the change is whole when the call answers, so no
 * Updating state is ever seen.
 */
export const updatePrimaryRegion: Operation<{ KeyId: string; PrimaryRegion: string }> = {
  schema: Joi.object({ KeyId: keyIdSchema.required(), PrimaryRegion: regionSchema.required() }),
  async handle(input, ctx) {
    const { key, arn } = await primaryKey(ctx, input.KeyId, 'kms:UpdatePrimaryRegion');
    assertNotPendingDeletion(key.state, arn);
    const regions = await ctx.deps.keys.keyRegions(key.keyId);
    if (input.PrimaryRegion === ctx.deps.scope.region || !regions.some((r) => r.region === input.PrimaryRegion)) {
      throw NotFoundException.keyDoesNotExist(keyArn({ ...ctx.deps.scope, region: input.PrimaryRegion }, key.keyId));
    }
    // Only now a view of it: the store keeps a view per region named, for the life of the process.
    const target = inRegion(ctx.deps, input.PrimaryRegion);
    const targetArn = keyArn(target.scope, key.keyId);
    // The replica's own policy must allow it too (AWS: permission in both regions).
    const replica = await useKey({ ...ctx, deps: target }, targetArn, { allowAlias: false, action: 'kms:UpdatePrimaryRegion' });
    assertNotPendingDeletion(replica.key.state, targetArn);
    if (!(await ctx.deps.keys.setPrimaryRegion(key.keyId, ctx.deps.scope.region, input.PrimaryRegion))) {
      throw new UnsupportedOperationException(`${arn} is no longer the primary key of its multi-Region key: another request changed its primary region.`);
    }
    ctx.noteKey(arn);
    return undefined;
  },
};
