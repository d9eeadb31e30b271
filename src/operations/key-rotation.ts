import { nextRotationDate } from '../domain/key-lifecycle';
import { rotateKeyMaterial } from '../domain/key-material';
import type { KeyRecord } from '../domain/key-repository';
import { assertUsableForCrypto } from '../domain/key-state';
import { ConflictException, KMSInvalidStateException, LimitExceededException, NotFoundException, UnsupportedOperationException } from '../errors/kms-errors';
import { epochSeconds, type Operation, type OperationContext } from './context';
import { resolveKey, type ResolvedKey } from './key-lookup';
import { paginate } from './paginate';
import { Joi, keyIdSchema, limitSchema, markerSchema } from './shared-schemas';

/**
 * EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus, RotateKeyOnDemand, ListKeyRotations
 * (kms-protocol.md §10 "Rotation"). Kept in one file because they share their key checks; each
 * handler is a few lines.
 */
const ON_DEMAND_LIMIT = 25;
const CONFLICT_WINDOW_MS = 20 * 60_000; // on-demand rotation is refused this close to an automatic one [D]

/** Rotation applies to symmetric AWS_KMS keys only (U7). */
async function rotatableKey(keyId: string, ctx: OperationContext, action: string): Promise<ResolvedKey> {
  const resolved = await resolveKey(keyId, ctx, { allowAlias: false, action });
  if (resolved.key.keySpec !== 'SYMMETRIC_DEFAULT' || resolved.key.origin !== 'AWS_KMS') {
    throw new UnsupportedOperationException(`${resolved.arn} key spec is ${resolved.key.keySpec} which is not valid for key rotation.`);
  }
  return resolved;
}

/** Enable/Disable/RotateKeyOnDemand need an Enabled key: Disabled is D1, PendingDeletion S3 (§5). */
async function enabledRotatableKey(keyId: string, ctx: OperationContext, action: string): Promise<ResolvedKey> {
  const resolved = await rotatableKey(keyId, ctx, action);
  assertUsableForCrypto(resolved.key.state, resolved.arn);
  return resolved;
}

/**
 * The key is read again and its state checked again when a conditional write finds it changed
 * (disabled or scheduled for deletion since it was read): the answer is the state's error.
 */
async function refusedBecauseOfState(ctx: OperationContext, resolved: ResolvedKey): Promise<never> {
  const key = await ctx.deps.keys.getKey(resolved.key.keyId);
  if (!key) throw NotFoundException.keyDoesNotExist(resolved.arn);
  assertUsableForCrypto(key.state, resolved.arn);
  if (key.deletionStartedAt) throw KMSInvalidStateException.pendingDeletion(resolved.arn);
  throw new ConflictException(`The state of ${resolved.arn} changed during the request; try again.`);
}

/** Enable/DisableKeyRotation: the rotation settings change only while the key is still Enabled. */
function setKeyRotation(action: string, rotation: (ctx: OperationContext, periodDays?: number) => { periodDays: number; nextRotationDate: Date } | null) {
  return async (input: { KeyId: string; RotationPeriodInDays?: number }, ctx: OperationContext): Promise<undefined> => {
    const resolved = await enabledRotatableKey(input.KeyId, ctx, action);
    if (!(await ctx.deps.keys.setRotation(resolved.key.keyId, rotation(ctx, input.RotationPeriodInDays)))) await refusedBecauseOfState(ctx, resolved);
    return undefined;
  };
}

export const enableKeyRotation: Operation<{ KeyId: string; RotationPeriodInDays?: number }> = {
  schema: Joi.object({ KeyId: keyIdSchema.required(), RotationPeriodInDays: Joi.number().integer().min(90).max(2560) }),
  handle: setKeyRotation('kms:EnableKeyRotation', (ctx, periodDays = 365) => ({ periodDays, nextRotationDate: nextRotationDate(ctx.deps.clock(), periodDays) })),
};

export const disableKeyRotation: Operation<{ KeyId: string }> = {
  schema: Joi.object({ KeyId: keyIdSchema.required() }),
  handle: setKeyRotation('kms:DisableKeyRotation', () => null),
};

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

export const rotateKeyOnDemand: Operation<{ KeyId: string }> = {
  schema: Joi.object({ KeyId: keyIdSchema.required() }),
  async handle(input, ctx) {
    // As AWS answers (recorded): the state first (a disabled RSA key is DisabledException), then the
    // spec, refused with an empty message.
    const resolved = await resolveKey(input.KeyId, ctx, { allowAlias: false, action: 'kms:RotateKeyOnDemand' });
    assertUsableForCrypto(resolved.key.state, resolved.arn);
    if (resolved.key.keySpec !== 'SYMMETRIC_DEFAULT' || resolved.key.origin !== 'AWS_KMS') throw new UnsupportedOperationException('');
    const { key, arn } = resolved;
    if (isAutomaticRotationImminent(key, ctx.deps.clock())) {
      throw new ConflictException(`An automatic rotation of ${arn} is due within 20 minutes; try again after it.`);
    }
    // The quota is checked where the version is reserved, counting rotations in flight: two
    // concurrent requests cannot both take the last one.
    const outcome = await rotateKeyMaterial(ctx.deps, key, { rotationType: 'ON_DEMAND', onDemandLimit: ON_DEMAND_LIMIT });
    if (outcome === 'quota') {
      throw new LimitExceededException(
        `The on-demand rotations limit has been reached for the given keyId. No more on-demand rotations can be performed for this key: ${arn}`,
      );
    }
    if (outcome === 'state') await refusedBecauseOfState(ctx, resolved);
    return { KeyId: arn };
  },
};

function isAutomaticRotationImminent(key: KeyRecord, now: Date): boolean {
  return key.rotation !== undefined && key.rotation.nextRotationDate.getTime() - now.getTime() < CONFLICT_WINDOW_MS;
}

interface ListKeyRotationsInput {
  KeyId: string;
  IncludeKeyMaterial?: 'ALL_KEY_MATERIAL' | 'ROTATIONS_ONLY';
  Limit?: number;
  Marker?: string;
}

/** Every material version, newest current; ROTATIONS_ONLY (default) leaves out the original material. */
export const listKeyRotations: Operation<ListKeyRotationsInput> = {
  schema: Joi.object({
    KeyId: keyIdSchema.required(),
    IncludeKeyMaterial: Joi.string().valid('ALL_KEY_MATERIAL', 'ROTATIONS_ONLY'),
    Limit: limitSchema,
    Marker: markerSchema,
  }),
  async handle(input, ctx) {
    const { key } = await rotatableKey(input.KeyId, ctx, 'kms:ListKeyRotations');
    const materials = (await ctx.deps.keys.listMaterialsOf(key.keyId)).filter(
      (m) => input.IncludeKeyMaterial === 'ALL_KEY_MATERIAL' || m.rotationType !== undefined,
    );
    const page = await paginate(ctx, `ListKeyRotations/${key.keyId}`, input, { defaultLimit: 100, maxLimit: 1000 }, async (after, limit) =>
      materials.filter((m) => m.version > after).slice(0, limit).map((m) => ({ ...m, position: m.version })),
    );
    return {
      Rotations: page.items.map((m) => ({
        KeyId: key.keyId,
        RotationDate: epochSeconds(m.createdAt),
        ...(m.rotationType && { RotationType: m.rotationType }),
        KeyMaterialId: m.materialId,
        KeyMaterialState: m.version === key.currentMaterialVersion ? 'CURRENT' : 'NON_CURRENT',
      })),
      ...page.tail,
    };
  },
};
