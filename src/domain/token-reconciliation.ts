import type { Hsm, ObjectRef } from '../hsm/hsm';
import type { Logger } from '../logging/logger';
import { rollBack } from './key-material';
import { KEY_LABEL_PREFIX, type KeyRepository } from './key-repository';
import type { ReplicaCoordination } from './replica-coordination';

/** The store and the token compared, object by object (ids, not labels). Read only. */
export interface TokenSurvey {
  /** Key objects on the token under the qkms/ label prefix. */
  objects: number;
  /** Objects a material version needs and the token lacks: their key answers KeyUnavailableException. */
  missing: ObjectRef[];
  /** Objects of ours (qkms/ labels) that no material version or intent owns: `qkms orphans` reviews them. */
  orphaned: ObjectRef[];
  /** Ids that several objects carry: the lookup refuses to guess, so their key answers KeyUnavailableException. */
  ambiguous: Array<ObjectRef & { count: number }>;
}

export async function surveyToken(keys: KeyRepository, hsm: Hsm): Promise<TokenSurvey> {
  const onToken = await hsm.listKeyObjects(KEY_LABEL_PREFIX);
  const counts = new Map<string, { ref: ObjectRef; count: number }>();
  for (const ref of onToken) {
    const seen = counts.get(ref.id);
    if (seen) seen.count++;
    else counts.set(ref.id, { ref, count: 1 });
  }
  // Intents before materials: an intent another replica activates in between is then in one list
  // or the other (its activation commits the material and drops the intent at once), never in neither.
  const pending = new Set((await keys.listIntents()).flatMap((i) => Object.values(i.objects).map((ref) => ref.id)));
  const owned = new Map<string, ObjectRef>();
  for (const m of await keys.listMaterials()) for (const ref of Object.values(m.objects)) owned.set(ref.id, ref);
  // GetParametersForImport's wrapping pairs are ours too, never missing (a crash may have come
  // before the pair was made; the sweep drops such records at their expiry). Listed after the
  // materials, so one made in between is reported orphaned at worst (this survey only reports).
  const wrapping = new Set((await keys.listImportParameters()).flatMap((p) => Object.values(p.objects).map((ref) => ref.id)));
  return {
    objects: onToken.length,
    missing: [...owned.values()].filter((ref) => !counts.has(ref.id)),
    orphaned: [...counts.values()].filter(({ ref }) => !owned.has(ref.id) && !pending.has(ref.id) && !wrapping.has(ref.id)).map(({ ref }) => ref),
    ambiguous: [...counts.values()].filter(({ count }) => count > 1).map(({ ref, count }) => ({ ...ref, count })),
  };
}

/**
 * Start-up, before any request: every intent a stopped gateway left (a CreateKey or rotation that
 * never answered) is rolled back — its objects destroyed, the intent dropped — and the token is
 * surveyed. An intent whose owner still runs (another replica, in the middle of that CreateKey or
 * rotation) is left to it; the scheduler's stale-intent sweep is the backstop for one that hangs.
 * Orphans are reported, never destroyed here: on a token shared with something else they may not
 * be ours to destroy (`qkms orphans --destroy` does it after review).
 */
export async function reconcileWithToken(deps: {
  keys: KeyRepository;
  hsm: Hsm;
  logger: Logger;
  owners: Pick<ReplicaCoordination, 'ifOwnerGone'>;
}): Promise<TokenSurvey & { rolledBack: number; leftToRetry: number; inFlight: number }> {
  let rolledBack = 0;
  let leftToRetry = 0;
  let inFlight = 0;
  for (const intent of await deps.keys.listIntents()) {
    try {
      const isRepaired = await deps.owners.ifOwnerGone(intent.owner, async () => {
        const destroyed = await rollBack(deps, intent);
        deps.logger.warn('reconcile: rolled back key material a stopped gateway had begun and not finished', { keyId: intent.keyId, version: intent.version, purpose: intent.purpose, objectsDestroyed: destroyed });
      });
      if (isRepaired) rolledBack++;
      else inFlight++;
    } catch (err) {
      // Nothing can use an unfinished version (and it can no longer be activated), so it is no
      // reason to refuse every key: the stale-intent sweep of the scheduler retries it.
      leftToRetry++;
      deps.logger.error('reconcile: could not roll back unfinished key material; the scheduler retries it', { keyId: intent.keyId, version: intent.version, cause: err instanceof Error ? err.message : String(err) });
    }
  }
  const survey = await surveyToken(deps.keys, deps.hsm);
  for (const ref of survey.missing) deps.logger.error('reconcile: key object missing from the token', ref);
  for (const ref of survey.ambiguous) deps.logger.error('reconcile: several token objects carry one id; its key is refused until an operator resolves it', ref);
  for (const ref of survey.orphaned) deps.logger.warn('reconcile: token object that no key owns (review with `qkms orphans`)', ref);
  deps.logger.info('reconcile: done', { tokenObjects: survey.objects, rolledBack, leftToRetry, inFlightOnLiveReplicas: inFlight, missing: survey.missing.length, orphaned: survey.orphaned.length, ambiguous: survey.ambiguous.length });
  return { ...survey, rolledBack, leftToRetry, inFlight };
}

/**
 * An internal HSM key (marker or audit MAC) made on first start. More than one object with its id
 * is refused: which one signed the markers and checkpoints cannot be guessed. Replicas starting
 * together call it under ReplicaCoordination.exclusively, so only the first makes the object.
 */
export async function ensureInternalKey(hsm: Hsm, ref: ObjectRef): Promise<void> {
  const count = await hsm.countObjects(ref);
  if (count === 0) await hsm.generateMacKey(ref);
  else if (count > 1) throw new Error(`${count} token objects carry the CKA_ID of ${ref.label}: refusing to guess which is the internal key`);
}
