import type { Hsm } from '../hsm/hsm';
import type { Logger } from '../logging/logger';
import { destroyKeyMaterial, generateKeyMaterial } from './key-material';
import type { KeyRecord, KeyRepository } from './key-repository';

const DAY_MS = 86_400_000;

export interface LifecycleDeps {
  hsm: Hsm;
  keys: KeyRepository;
  clock: () => Date;
  logger: Logger;
}

/** Rotations of one key run one after another: two at once would pick the same next version. */
const rotating = new Map<string, Promise<unknown>>();

/**
 * A rotation: new KEK and MAC key in the HSM under the next version's labels, then the metadata
 * makes it current in one transaction. Old versions stay on the token, so every earlier ciphertext
 * still decrypts (its blob names its version). If the metadata write fails, the new objects go.
 * Serialised per key within this process; several processes on one store (issue #5) need the
 * version reserved in the store instead.
 */
export async function rotateKeyMaterial(deps: LifecycleDeps, key: KeyRecord, rotationType: 'AUTOMATIC' | 'ON_DEMAND'): Promise<number> {
  const previous = rotating.get(key.keyId) ?? Promise.resolve();
  const run = previous.catch(() => undefined).then(() => rotateNow(deps, key, rotationType));
  rotating.set(key.keyId, run);
  try {
    return await run;
  } finally {
    if (rotating.get(key.keyId) === run) rotating.delete(key.keyId);
  }
}

async function rotateNow(deps: LifecycleDeps, key: KeyRecord, rotationType: 'AUTOMATIC' | 'ON_DEMAND'): Promise<number> {
  const version = Math.max(...(await deps.keys.listMaterialsOf(key.keyId)).map((m) => m.version)) + 1;
  const materialId = (await deps.hsm.randomBytes(32)).toString('hex');
  await generateKeyMaterial(deps.hsm, key.keyId, version, key);
  try {
    await deps.keys.addMaterial({ keyId: key.keyId, version, materialId, createdAt: deps.clock(), rotationType });
  } catch (err) {
    await destroyKeyMaterial(deps.hsm, key.keyId, version, key.keySpec).catch(() => undefined);
    throw err;
  }
  return version;
}

export function nextRotationDate(from: Date, periodDays: number): Date {
  return new Date(from.getTime() + periodDays * DAY_MS);
}

/**
 * The scheduled work, run by the Scheduler (src/scheduler.ts) at an interval and by tests on an
 * injected clock: keys past their deletion date are destroyed (HSM objects first, so a failure is
 * retried on the next run; then metadata, aliases, tags and grants), and due automatic rotations run.
 */
export async function runDueLifecycleWork(deps: LifecycleDeps): Promise<{ deleted: string[]; rotated: string[] }> {
  const now = deps.clock();
  const deleted: string[] = [];
  for (const keyId of await deps.keys.keysDueForDeletion(now)) {
    const key = await deps.keys.getKey(keyId);
    if (!key) continue;
    for (const m of await deps.keys.listMaterialsOf(keyId)) await destroyKeyMaterial(deps.hsm, keyId, m.version, key.keySpec);
    await deps.keys.deleteKey(keyId);
    deps.logger.info('key deleted at the end of its waiting period', { keyId });
    deleted.push(keyId);
  }
  const rotated: string[] = [];
  for (const keyId of await deps.keys.keysDueForRotation(now)) {
    const key = await deps.keys.getKey(keyId);
    if (!key?.rotation) continue;
    const version = await rotateKeyMaterial(deps, key, 'AUTOMATIC');
    await deps.keys.setRotation(keyId, { periodDays: key.rotation.periodDays, nextRotationDate: nextRotationDate(now, key.rotation.periodDays) });
    deps.logger.info('key rotated automatically', { keyId, version });
    rotated.push(keyId);
  }
  return { deleted, rotated };
}
