import type { KeyRepository } from '../domain/key-repository';

/**
 * Methods that change nothing the cache holds (reads, and writes of intents, grants, the audit
 * anchor and the write probe): they pass straight through.
 */
const PASS_THROUGH = new Set<string>([
  'listIntents', 'listMaterials', 'listMaterialsOf', 'listKeys', 'listTags', 'getAlias', 'countAliases', 'listAliases',
  'keysDueForDeletion', 'keysDueForRotation', 'grantTokenHashes', 'getGrant', 'listGrants', 'countGrants',
  'getAuditAnchor', 'setAuditAnchor', 'probeWrite', 'recordKeyIntent', 'abandonIntent', 'deleteIntent',
  'insertGrant', 'deleteGrant', 'recordKeyUsage', 'getKeyUsage', 'close',
  'materialsDueToExpire', 'getImportParameters', 'listImportParameters', 'keyRegions', 'regionsWithKeys',
]);

/**
 * The cached reads: what every KMS request on a key asks (use-key.ts useKey, currentMaterial).
 * Records and aliases are regional; material is shared by every region's record of a key id.
 */
type CachedRead = 'getKey' | 'getMaterial' | 'aliasTarget';
const CACHED: Record<CachedRead, (region: string, args: unknown[]) => string> = {
  getKey: (region, [keyId]) => `k:${region}:${keyId as string}`,
  getMaterial: (_region, [keyId, version]) => `m:${keyId as string}:${version as number}`,
  aliasTarget: (region, [aliasName]) => `a:${region}:${aliasName as string}`,
};

export interface KeyCacheOptions {
  /** How long a read answers from memory (QKMS_KEY_CACHE_MS): the bound on seeing another replica's change. */
  maxAgeMs: number;
  /** The other replicas (ReplicaCoordination's announceKeyChange and onKeyChange). */
  replicas?: { announce(): Promise<void>; onChange(listener: () => void): void };
  /** Told when an announcement failed (the others then see the change within maxAgeMs). */
  onAnnounceError?: (err: Error) => void;
  maxEntries?: number;
  now?: () => number;
}

/**
 * The key store with the reads every request makes — the key record, its material, an alias's
 * target — answered from memory for at most `maxAgeMs`. Any other method not listed as passing
 * through is taken for a write of keys or aliases: it empties the cache before and after it, so
 * this process reads its own writes at once and a read in flight across a write is not kept (a
 * generation count), and then it is announced to the other replicas, which empty theirs, before
 * the write's caller goes on (so before the change is answered). A replica that misses an
 * announcement (its connection broke) still sees the change within `maxAgeMs`. Returned values
 * are frozen, cached or not, so no caller can change what another is handed (a copy per read cost
 * ~4 % of the event loop under load). A method added to KeyRepository later is a write until
 * listed here.
 */
export function cachingKeyRepository(inner: KeyRepository, options: KeyCacheOptions): KeyRepository {
  // Without a cache of its own a replica still announces its writes to those that have one.
  if (options.maxAgeMs <= 0 && !options.replicas) return inner;
  const now = options.now ?? (() => performance.now());
  // Bounded for memory, not for hit rate: a policy may be 32 KB, so 1,000 records are at most ~32 MB.
  const maxEntries = options.maxEntries ?? 1_000;
  const entries = new Map<string, { value: unknown; at: number }>();
  let generation = 0;
  const invalidate = () => {
    generation++;
    entries.clear();
  };
  options.replicas?.onChange(invalidate);
  const announce = async () => {
    try {
      await options.replicas?.announce();
    } catch (err) {
      options.onAnnounceError?.(err as Error);
    }
  };

  const cachedRead = async (view: KeyRepository, name: CachedRead, args: unknown[]): Promise<unknown> => {
    if (options.maxAgeMs <= 0) return (view[name] as (...a: unknown[]) => Promise<unknown>)(...args);
    const key = CACHED[name](view.region, args);
    const hit = entries.get(key);
    if (hit && now() - hit.at < options.maxAgeMs) return hit.value;
    const startedAt = now();
    const seen = generation;
    const value = deepFreeze(await (view[name] as (...a: unknown[]) => Promise<unknown>)(...args));
    // Absent is not kept (a key made a moment later on another replica is found at once).
    if (value !== undefined && seen === generation) {
      entries.delete(key);
      entries.set(key, { value, at: startedAt });
      if (entries.size > maxEntries) entries.delete(entries.keys().next().value as string);
    }
    return value;
  };

  // One proxy per region's view, all sharing the cache: a write through any view empties it.
  const views = new Map<string, KeyRepository>();
  const wrap = (view: KeyRepository): KeyRepository => new Proxy(view, {
    get(target, prop, receiver) {
      const original = Reflect.get(target, prop, receiver) as unknown;
      if (typeof prop !== 'string' || typeof original !== 'function') return original;
      if (prop === 'inRegion') {
        return (region: string) => {
          let other = views.get(region);
          if (!other) views.set(region, (other = wrap(target.inRegion(region))));
          return other;
        };
      }
      if (Object.hasOwn(CACHED, prop)) return (...args: unknown[]) => cachedRead(target, prop as CachedRead, args);
      if (PASS_THROUGH.has(prop)) return (original as (...a: unknown[]) => unknown).bind(target);
      return async (...args: unknown[]) => {
        invalidate();
        try {
          return await (original as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        } finally {
          invalidate();
          await announce();
        }
      };
    },
  });
  const home = wrap(inner);
  views.set(inner.region, home);
  return home;
}

/** Freezes a store record and what it holds (plain objects and arrays; a Date's value stays settable but nothing sets it). */
function deepFreeze<T>(value: T): T {
  if (value === null || typeof value !== 'object' || Object.isFrozen(value)) return value;
  Object.freeze(value);
  for (const inner of Object.values(value as object)) deepFreeze(inner);
  return value;
}
