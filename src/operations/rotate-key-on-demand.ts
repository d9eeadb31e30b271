import { rotateKeyMaterial } from '../domain/key-material';
import type { KeyRecord } from '../domain/key-repository';
import { ConflictException, KMSInvalidStateException, LimitExceededException, UnsupportedOperationException } from '../errors/kms-errors';
import type { Operation, OperationContext } from './context';
import { assertNotReplica, refusedBecauseOfState } from './key-rotation';
import { Joi, keyIdSchema } from './shared-schemas';
import { useKey, type ResolvedKey } from './use-key';

const ON_DEMAND_LIMIT = 25;
const CONFLICT_WINDOW_MS = 20 * 60_000; // on-demand rotation is refused this close to an automatic one [D]

/** RotateKeyOnDemand: new material now, at most 25 times per key. */
export const rotateKeyOnDemand: Operation<{ KeyId: string }> = {
  schema: Joi.object({ KeyId: keyIdSchema.required() }),
  async handle(input, ctx) {
    // As AWS answers (recorded): the state first (a disabled RSA key is DisabledException), then the
    // spec, refused with an empty message.
    const resolved = await useKey(ctx, input.KeyId, { allowAlias: false, action: 'kms:RotateKeyOnDemand', state: 'usableForCrypto' });
    if (resolved.key.keySpec !== 'SYMMETRIC_DEFAULT') throw new UnsupportedOperationException('');
    assertNotReplica(ctx, resolved);
    const { key, arn } = resolved;
    if (key.origin === 'EXTERNAL') return rotateToImportedMaterial(ctx, resolved);
    if (isAutomaticRotationImminent(key, ctx.deps.clock())) {
      throw new ConflictException(`An automatic rotation of ${arn} is due within 20 minutes; try again after it.`);
    }
    // The quota is checked where the version is reserved, counting rotations in flight: two
    // concurrent requests cannot both take the last one.
    const outcome = await rotateKeyMaterial(ctx.deps, key, { rotationType: 'ON_DEMAND', onDemandLimit: ON_DEMAND_LIMIT });
    if (outcome === 'quota') throw onDemandQuotaReached(arn);
    if (outcome === 'state') await refusedBecauseOfState(ctx, resolved);
    return { KeyId: arn };
  },
};

/** An imported key rotates to the material imported for it with ImportType NEW_KEY_MATERIAL [D]. */
async function rotateToImportedMaterial(ctx: OperationContext, resolved: ResolvedKey): Promise<{ KeyId: string }> {
  const outcome = await ctx.deps.keys.rotateToImportedMaterial(resolved.key.keyId, ctx.deps.clock(), ON_DEMAND_LIMIT);
  if (outcome === 'none') throw new KMSInvalidStateException(`No available key material pending rotation for the key: ${resolved.arn}.`);
  if (outcome === 'quota') throw onDemandQuotaReached(resolved.arn);
  if (outcome === 'state') await refusedBecauseOfState(ctx, resolved);
  return { KeyId: resolved.arn };
}

function onDemandQuotaReached(arn: string): LimitExceededException {
  return new LimitExceededException(`The on-demand rotations limit has been reached for the given keyId. No more on-demand rotations can be performed for this key: ${arn}`);
}

function isAutomaticRotationImminent(key: KeyRecord, now: Date): boolean {
  return key.rotation !== undefined && key.rotation.nextRotationDate.getTime() - now.getTime() < CONFLICT_WINDOW_MS;
}
