import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/load-config';
import type { KeyRepository } from '../domain/key-repository';
import type { Logger } from '../logging/logger';
import { PostgresKeyRepository } from './postgres-key-repository';
import { SqliteKeyRepository } from './sqlite-key-repository';
import { LocalTokenPool, type TokenPool } from './token-pool';

export interface OpenedStore {
  keys: KeyRepository;
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
    const keys = await PostgresKeyRepository.open(config.storeUrl, {
      poolSize: config.storePoolSize,
      onIdleError: (err) => logger.warn('a pooled PostgreSQL connection failed while idle; the pool replaces it', { error: err.message }),
    });
    return { keys, isNew: keys.isNew, kind: 'postgres', rateBuckets: keys.rateBuckets() };
  }
  const file = path.join(config.dataDir, 'qkms.db');
  const isNew = !fs.existsSync(file);
  return { keys: new SqliteKeyRepository(file), isNew, kind: 'sqlite', rateBuckets: new LocalTokenPool() };
}
