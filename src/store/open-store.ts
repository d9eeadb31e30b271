import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/load-config';
import type { KeyRepository } from '../domain/key-repository';
import type { ReplicaCoordination } from '../domain/replica-coordination';
import type { Logger } from '../logging/logger';
import { cachingKeyRepository } from './caching-key-repository';
import { LocalCoordination } from './local-coordination';
import { PostgresCoordination } from './postgres-coordination';
import { PostgresKeyRepository } from './postgres-key-repository';
import { SqliteKeyRepository } from './sqlite-key-repository';
import { LocalTokenPool, type TokenPool } from './token-pool';

export interface OpenedStore {
  keys: KeyRepository;
  /** How this process agrees with the other replicas of the store (alone, on SQLite). */
  coordination: ReplicaCoordination;
  /** Created by this open: the audit trail beside it cannot be its own (audit-startup.ts). */
  isNew: boolean;
  /** For logs: which store, never its password. */
  kind: 'sqlite' | 'postgres';
  /** The rate-limit buckets: in the database replicas share, or in this process. */
  rateBuckets: TokenPool;
}

/** The configured key store: PostgreSQL when QKMS_STORE_URL is set, else SQLite in the data dir. */
export async function openStore(config: Config, logger: Logger): Promise<OpenedStore> {
  if (config.storeUrl) {
    const coordination = await PostgresCoordination.open(config.storeUrl, (err) =>
      logger.warn('the PostgreSQL coordination connection failed (its leases ended with it); the next use reconnects', { error: err.message }),
    );
    try {
      const keys = await PostgresKeyRepository.open(config.storeUrl, {
        poolSize: config.storePoolSize,
        ownerId: coordination.ownerId,
        region: config.region,
        onIdleError: (err) => logger.warn('a pooled PostgreSQL connection failed while idle; the pool replaces it', { error: err.message }),
      });
      const cached = cachingKeyRepository(keys, {
        maxAgeMs: config.keyCacheMs,
        replicas: { announce: () => coordination.announceKeyChange(), onChange: (listener) => coordination.onKeyChange(listener) },
        onAnnounceError: (err) => logger.warn('a key change could not be announced to the other replicas; they see it within QKMS_KEY_CACHE_MS', { error: err.message }),
      });
      return { keys: cached, coordination, isNew: keys.isNew, kind: 'postgres', rateBuckets: keys.rateBuckets() };
    } catch (err) {
      await coordination.close();
      throw err;
    }
  }
  const file = path.join(config.dataDir, 'qkms.db');
  const isNew = !fs.existsSync(file);
  const coordination = new LocalCoordination();
  const keys = new SqliteKeyRepository(file, { ownerId: coordination.ownerId, region: config.region });
  return { keys: cachingKeyRepository(keys, { maxAgeMs: config.keyCacheMs }), coordination, isNew, kind: 'sqlite', rateBuckets: new LocalTokenPool() };
}
