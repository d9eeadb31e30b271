import crypto from 'node:crypto';
import type { Hsm, KeyPairUsage } from '../hsm/hsm';
import { HsmError } from '../hsm/hsm-error';
import type { Logger } from '../logging/logger';
import { newObjectIds, type KeyRecord, type KeyRepository, type MaterialIntent, type MaterialObjects, type ReserveRefusal, type Tag } from './key-repository';
import { SUPPORTED_SPECS, type KeySpec, type KeyUsage } from './key-spec';

/**
 * Making key material on the token, crash-safe (docs/crypto.md "Key material on the token"). New
 * material — a key's first version (CreateKey) or a rotation — goes in three steps:
 *   1. intent: the version (reserved: never reused) and its objects' random CKA_IDs are recorded in
 *      the store; nothing exists on the token yet;
 *   2. objects: made on the token with those ids;
 *   3. activation: one transaction makes the version real and current and drops the intent.
 * Until step 3 nothing names the version: no response was sent and no ciphertext can use it. So a
 * failure in step 2 or 3 destroys the objects and drops the intent, and a crash anywhere leaves at
 * most an intent and some of its objects, which start-up reconciliation rolls back the same way.
 */
export interface MaterialDeps {
  hsm: Hsm;
  keys: KeyRepository;
  logger: Logger;
}

/** KeyMetadata's KeyMaterialId of a new version: 32 random bytes as hex (an identifier, not a secret). */
function newMaterialId(): string {
  return crypto.randomBytes(32).toString('hex');
}

/** CreateKey: the key's first material made on the token, then the key, its material and tags stored at once. */
export async function createKeyWithMaterial(deps: MaterialDeps, key: KeyRecord, tags: Tag[]): Promise<void> {
  const intent = await deps.keys.recordKeyIntent({ keyId: key.keyId, objectIds: newObjectIds(key.keySpec), createdAt: key.createdAt });
  await makeMaterial(deps, intent, key, () => deps.keys.activateKey(intent, key, newMaterialId(), tags));
}

/**
 * A rotation: the next version reserved (the key must still be Enabled, and as `request` says due
 * or under its on-demand quota), its objects made, then activated. Old versions stay on the token,
 * so every earlier ciphertext still decrypts (its blob names its version). Returns the new version,
 * or why none could be reserved.
 */
export async function rotateKeyMaterial(
  deps: MaterialDeps & { clock: () => Date },
  key: KeyRecord,
  request: { rotationType: 'AUTOMATIC' | 'ON_DEMAND'; dueBy?: Date; onDemandLimit?: number; nextRotation?: { periodDays: number; nextRotationDate: Date } },
): Promise<number | ReserveRefusal> {
  const intent = await deps.keys.reserveVersion(key.keyId, { ...request, objectIds: newObjectIds(key.keySpec), createdAt: deps.clock() });
  if (typeof intent === 'string') return intent;
  await makeMaterial(deps, intent, key, () => deps.keys.activateRotation(intent, newMaterialId(), request.nextRotation));
  return intent.version;
}

/** Steps 2 and 3; on failure the intent is rolled back (or left for reconciliation) and the error rethrown. */
async function makeMaterial(deps: MaterialDeps, intent: MaterialIntent, key: { keySpec: KeySpec; keyUsage: KeyUsage }, activate: () => Promise<void>): Promise<void> {
  try {
    await generateObjects(deps.hsm, intent.objects, key);
    await activate();
  } catch (err) {
    // A call past its deadline may still finish on the token after we give up on it (a key pair on
    // the libuv pool): destroy what is there now, but keep the intent, so that the sweep of stale
    // intents (runDueLifecycleWork) or the next start destroys what appears later.
    const isStillRunning = err instanceof HsmError && err.kind === 'timeout';
    await rollBack(deps, intent, { keepIntent: isStillRunning, isOwn: true }).catch((cause: unknown) =>
      deps.logger.error('key material: rollback failed; start-up reconciliation will finish it', { keyId: intent.keyId, version: intent.version, cause: describe(cause) }),
    );
    throw err;
  }
}

/** Makes a version's objects with their recorded ids: an AES KEK and an HMAC key (symmetric), one HMAC key (HMAC_*), or a key pair. */
async function generateObjects(hsm: Hsm, objects: MaterialObjects, key: { keySpec: KeySpec; keyUsage: KeyUsage }): Promise<void> {
  const material = SUPPORTED_SPECS[key.keySpec].material;
  if (material.family === 'SYMMETRIC') {
    await hsm.generateKek(objects.kek);
    await hsm.generateMacKey(objects.mac);
  } else if (material.family === 'HMAC') {
    await hsm.generateMacKey(objects.hmac, { hash: material.hash, bytes: material.bytes });
  } else {
    await hsm.generateKeyPair({ private: objects.private, public: objects.public }, material, key.keyUsage as KeyPairUsage);
  }
}

/**
 * Undoes an intent: marked abandoned first (so the call that made it, if still running, cannot
 * activate it once objects start going), every object carrying one of its ids destroyed, then the
 * intent dropped. For an intent that is gone nothing is destroyed — it may have been activated since
 * it was listed — unless `isOwn`: the caller made its objects and its activation failed.
 * Says how many objects went.
 */
export async function rollBack(deps: MaterialDeps, intent: MaterialIntent, { keepIntent = false, isOwn = false } = {}): Promise<number> {
  if (!(await deps.keys.abandonIntent(intent.intentId)) && !isOwn) return 0;
  const destroyed = await destroyObjects(deps.hsm, intent.objects);
  if (!keepIntent) await deps.keys.deleteIntent(intent.intentId);
  return destroyed;
}

/**
 * Destroys every token object carrying the ids, one after another (a missing one is not an error:
 * this is also how a deletion resumes after a crash). Says how many went.
 */
export async function destroyObjects(hsm: Hsm, objects: MaterialObjects): Promise<number> {
  let destroyed = 0;
  for (const ref of Object.values(objects)) destroyed += await hsm.destroyKey(ref);
  return destroyed;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
