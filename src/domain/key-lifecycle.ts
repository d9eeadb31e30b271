import type { Hsm } from '../hsm/hsm';
import type { Logger } from '../logging/logger';
import { discardImportedMaterial, discardImportParameters } from './import-material';
import { destroyObjects, rollBack, rotateKeyMaterial } from './key-material';
import type { KeyRepository } from './key-repository';

const DAY_MS = 86_400_000;

/**
 * An intent older than this has been answered (the slowest HSM call, a key-pair generation, is
 * given up on after SLOW_CALL_TIMEOUT_MS): its objects, if any, are orphans in the making, and the
 * scheduler rolls it back without waiting for a restart. Age is by the wall clock, so a call may
 * still be running (the clock stepped forward, a call stuck in the module longer than this): the
 * rollback marks the intent abandoned first, so that call can no longer activate it; an object it
 * makes after the rollback is an orphan (`qkms orphans`).
 */
export const STALE_INTENT_MS = 10 * 60_000;

/** After a key's scheduled work fails, it waits this long before the next try, doubling up to the maximum. */
export const RETRY_FIRST_MS = 60_000;
export const RETRY_MAX_MS = 60 * 60_000;

export interface LifecycleDeps {
  hsm: Hsm;
  keys: KeyRepository;
  /** The regions whose keys' deletions and rotations are due here (QKMS_REGIONS); unset: the keys view's region. */
  regions?: readonly string[];
  clock: () => Date;
  logger: Logger;
  /** Told of every failed piece of scheduled work (the metrics count them). */
  onFailure?: (work: ScheduledWork) => void;
  /**
   * Records a scheduled event in the audit trail (DeleteKey, RotateKey, as AWS CloudTrail names
   * them), resolving once it is durable: before the work (`errorCode` null), and again with the
   * error if the work then fails. A rejection of the first stops the work (fail-closed, like a
   * request): it is retried with backoff. `region` is that of the key's record the work is on (a
   * multi-Region key's records are distinct keys in the trail, as in CloudTrail).
   */
  recordEvent?: (operation: 'DeleteKey' | 'RotateKey' | 'DeleteExpiredKeyMaterial', keyId: string, errorCode: string | null, region: string) => Promise<void>;
}

/**
 * The work between its two records: the first before anything changes (no record, no work), a
 * second one if the work fails (best effort: the failure is logged and retried anyway).
 */
async function recorded<T>(deps: LifecycleDeps, operation: 'DeleteKey' | 'RotateKey' | 'DeleteExpiredKeyMaterial', keyId: string, work: () => Promise<T>, isRefusal: (result: T) => boolean = () => false): Promise<T> {
  const { region } = deps.keys;
  await deps.recordEvent?.(operation, keyId, null, region);
  let result: T;
  try {
    result = await work();
  } catch (err) {
    await deps.recordEvent?.(operation, keyId, 'KMSInternalException', region).catch(() => undefined);
    throw err;
  }
  if (isRefusal(result)) await deps.recordEvent?.(operation, keyId, 'KMSInvalidStateException', region).catch(() => undefined);
  return result;
}

export type ScheduledWork = 'deletion' | 'rotation' | 'rollback' | 'expiry';

export function nextRotationDate(from: Date, periodDays: number): Date {
  return new Date(from.getTime() + periodDays * DAY_MS);
}

/**
 * Per key, when its failed work may be tried again: one key whose destroy keeps failing must not
 * stop the deletions and rotations of the others, nor be hammered every run.
 */
export class RetryBackoff {
  private readonly waiting = new Map<string, { failures: number; notBefore: number }>();

  isWaiting(key: string, now: Date): boolean {
    const entry = this.waiting.get(key);
    return entry !== undefined && now.getTime() < entry.notBefore;
  }

  /** Records a failure; returns how long the key now waits. */
  failed(key: string, now: Date): number {
    const failures = (this.waiting.get(key)?.failures ?? 0) + 1;
    const delay = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** (failures - 1));
    this.waiting.set(key, { failures, notBefore: now.getTime() + delay });
    return delay;
  }

  succeeded(key: string): void {
    this.waiting.delete(key);
  }

  /** Forgets the keys whose work is no longer due (rotation disabled, key or intent gone). */
  keepOnly(due: ReadonlySet<string>): void {
    for (const key of this.waiting.keys()) if (!due.has(key)) this.waiting.delete(key);
  }

  /** Keys waiting after a failure (a gauge in /metrics). */
  get size(): number {
    return this.waiting.size;
  }
}

/**
 * The scheduled work, run by the Scheduler (src/scheduler.ts) at an interval and by tests on an
 * injected clock: stale intents rolled back, keys past their deletion date destroyed, due automatic
 * rotations made. Each key's work is on its own: a failure is logged, counted and retried with
 * backoff, and the others go on.
 */
export async function runDueLifecycleWork(deps: LifecycleDeps, backoff = new RetryBackoff()): Promise<{ deleted: string[]; rotated: string[]; rolledBack: number; expired: string[] }> {
  const now = deps.clock();
  const due = new Set<string>();
  const attempt = async (work: ScheduledWork, key: string, body: () => Promise<boolean>): Promise<boolean> => {
    due.add(`${work}:${key}`);
    if (backoff.isWaiting(`${work}:${key}`, now)) return false;
    try {
      const done = await body();
      backoff.succeeded(`${work}:${key}`);
      return done;
    } catch (err) {
      const retryInMs = backoff.failed(`${work}:${key}`, now);
      deps.logger.error(`scheduled ${work} failed; other keys go on, this one is retried later`, { key, retryInSeconds: retryInMs / 1000, cause: err instanceof Error ? err.message : String(err) });
      deps.onFailure?.(work);
      return false;
    }
  };

  let rolledBack = 0;
  for (const intent of await deps.keys.listIntents()) {
    if (now.getTime() - intent.createdAt.getTime() < STALE_INTENT_MS) continue;
    const done = await attempt('rollback', `${intent.keyId}/${intent.version}`, async () => {
      const destroyed = await rollBack(deps, intent);
      deps.logger.warn('rolled back a stale key-material intent', { keyId: intent.keyId, version: intent.version, objectsDestroyed: destroyed });
      return true;
    });
    if (done) rolledBack++;
  }

  const deleted: string[] = [];
  const rotated: string[] = [];
  for (const region of deps.regions ?? [deps.keys.region]) {
    // Deletions and rotations are regional (a multi-Region key rotates from its primary's region).
    const regional = { ...deps, keys: deps.keys.inRegion(region) };
    for (const keyId of await regional.keys.keysDueForDeletion(now)) {
      if (await attempt('deletion', `${region}/${keyId}`, () => deleteKeyAtEndOfWaitingPeriod(regional, keyId, now))) deleted.push(keyId);
    }
    for (const keyId of await regional.keys.keysDueForRotation(now)) {
      const done = await attempt('rotation', keyId, async () => {
        const key = await regional.keys.getKey(keyId);
        if (!key?.rotation) return false;
        const nextRotation = { periodDays: key.rotation.periodDays, nextRotationDate: nextRotationDate(now, key.rotation.periodDays) };
        // Reserved only if still Enabled and due (a key disabled meanwhile is refused, and its record
        // says so); the new date is set with the activation, so a crash cannot rotate twice.
        const version = await recorded(regional, 'RotateKey', keyId, () => rotateKeyMaterial(regional, key, { rotationType: 'AUTOMATIC', dueBy: now, nextRotation }), (v) => typeof v !== 'number');
        if (typeof version !== 'number') return false;
        deps.logger.info('key rotated automatically', { keyId, version });
        return true;
      });
      if (done) rotated.push(keyId);
    }
  }
  const expired: string[] = [];
  for (const { keyId, version } of await deps.keys.materialsDueToExpire(now)) {
    // Only if still due when the transaction runs: a reimport may have moved its ValidTo meanwhile.
    const done = await attempt('expiry', `${keyId}/${version}`, async () => {
      // Material is shared, its state is the record's: the discard runs in the key's region (an
      // imported key has one record: multi-Region keys are not imported).
      const [record] = await deps.keys.keyRegions(keyId);
      if (!record) return false;
      const regional = { ...deps, keys: deps.keys.inRegion(record.region) };
      return recorded(regional, 'DeleteExpiredKeyMaterial', keyId, () => discardImportedMaterial(regional, keyId, version, now));
    });
    if (done) {
      expired.push(keyId);
      deps.logger.info('imported key material expired and was deleted', { keyId, version });
    }
  }
  for (const parameters of await deps.keys.listImportParameters()) {
    if (parameters.validTo.getTime() > now.getTime()) continue;
    await attempt('expiry', `import-parameters/${parameters.parametersId}`, async () => {
      await discardImportParameters(deps, parameters);
      return true;
    });
  }
  backoff.keepOnly(due);
  return { deleted, rotated, rolledBack, expired };
}

/**
 * The end of a waiting period: the key is claimed for deletion (from then on CancelKeyDeletion
 * cannot race it), every object of every version and of any intent is destroyed, then the
 * metadata with its aliases, tags and grants. A crash at any point leaves the claim, and the next
 * run resumes: destroying an object that is already gone is not an error. False when the key was
 * cancelled or is gone.
 *
 * A multi-Region key's material is shared by its regions' records: while another region holds the
 * key, only this region's record goes (with its aliases, tags and grants) and the HSM objects stay.
 * A primary whose replicas are still there (one was added while it was pending deletion) is not
 * deleted: it waits in PendingReplicaDeletion, as if it had been scheduled with them.
 * PendingReplicaDeletion whose replicas are all gone, or which is no longer the primary (the
 * primary moved while its deletion was scheduled): its waiting period begins now.
 */
async function deleteKeyAtEndOfWaitingPeriod(deps: LifecycleDeps, keyId: string, now: Date): Promise<boolean> {
  const key = await deps.keys.getKey(keyId);
  if (!key) return false;
  if (key.state === 'PendingReplicaDeletion') {
    const days = key.pendingWindowDays ?? 30;
    await deps.keys.transitionState(keyId, ['PendingReplicaDeletion'], { state: 'PendingDeletion', deletionDate: new Date(now.getTime() + days * DAY_MS), pendingWindowDays: days });
    deps.logger.info('a multi-Region key waits for no replica any more (they are deleted, or it is no longer the primary): its own waiting period begins', { keyId, region: deps.keys.region, days });
    return false;
  }
  if (key.primaryRegion === deps.keys.region && !key.deletionStartedAt && (await deps.keys.keyRegions(keyId)).some((r) => r.region !== deps.keys.region)) {
    await deps.keys.transitionState(keyId, ['PendingDeletion'], { state: 'PendingReplicaDeletion', deletionDate: null, pendingWindowDays: key.pendingWindowDays ?? 30 });
    return false;
  }
  if (!key.deletionStartedAt && !(await deps.keys.beginDeletion(keyId, now))) return false;
  // In the trail before anything irreversible happens: if it cannot be recorded, nothing is
  // destroyed and the deletion is retried (each attempt that goes ahead has its record).
  const destroyed = await recorded(deps, 'DeleteKey', keyId, async () => {
    if (await deps.keys.deleteRegionRecord(keyId)) return 0;
    let n = 0;
    for (const m of await deps.keys.listMaterialsOf(keyId)) n += await destroyObjects(deps.hsm, m.objects);
    for (const intent of (await deps.keys.listIntents()).filter((i) => i.keyId === keyId)) n += await destroyObjects(deps.hsm, intent.objects);
    for (const parameters of await deps.keys.listImportParameters(keyId)) n += await destroyObjects(deps.hsm, parameters.objects);
    await deps.keys.deleteKey(keyId);
    return n;
  });
  deps.logger.info('key deleted at the end of its waiting period', { keyId, region: deps.keys.region, objectsDestroyed: destroyed });
  return true;
}
