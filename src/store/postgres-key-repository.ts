import crypto from 'node:crypto';
import { Pool, type PoolClient } from 'pg';
import type { Alias, AliasInsert, Grant, KeyLastUsage, KeyMaterial, KeyRecord, KeyRepository, MaterialIntent, ReserveRefusal, StateChange, Tag } from '../domain/key-repository';
import { objectIdsOf } from '../domain/key-repository';
import type { KeyState } from '../domain/key-state';
import { PostgresAliasesAndGrants } from './postgres-aliases-and-grants';
import { PostgresImportedMaterial } from './postgres-imported-material';
import { migrate } from './postgres-migrations';
import { rowToKey, rowToMaterial, type KeyRow, type MaterialRow } from './postgres-rows';
import { PostgresTokenPool } from './postgres-token-pool';
import type { TokenPool } from './token-pool';
import { PostgresIntents } from './postgres-intents';
import { PostgresProbeAndAnchor } from './postgres-probe-and-anchor';
import { PostgresRegionRecords } from './postgres-region-records';
import { PgSession } from './postgres-session';

export interface PostgresStoreOptions {
  /** Connections per process; each gateway replica has its own pool. */
  poolSize?: number;
  /** A pooled connection that failed while idle (server restart, network): the pool replaces it. */
  onIdleError?: (err: Error) => void;
  /** How long a statement waits for a free connection before it fails (the database is down or overloaded). */
  connectTimeoutMs?: number;
  /** Recorded on the intents it records (the replica's ReplicaCoordination.ownerId); a fresh id when not given. */
  ownerId?: string;
  /** The home region (QKMS_REGION): the view `open` returns, and the owner of rows written before regions existed. */
  region?: string;
}

/** What every region's view of one store shares: the pool, and the views made so far. */
interface SharedStore {
  db: PgSession;
  intents: PostgresIntents;
  probeAndAnchor: PostgresProbeAndAnchor;
  isNew: boolean;
  ownerId: string;
  views: Map<string, PostgresKeyRepository>;
  closing?: Promise<void>;
}

/** PostgreSQL's `integer` (versions). */
const MAX_INTEGER = 2 ** 31 - 1;

/** QKMS_REGION's default (config/schema.ts). */
const DEFAULT_REGION = 'us-east-1';

/**
 * The key store on PostgreSQL, for gateway replicas sharing one database. Same contract as the
 * SQLite store (the repository contract suite runs on both). Several processes write at once, so
 * every check-then-act is one conditional statement or a transaction that first locks the rows it
 * depends on (READ COMMITTED: a statement that waited for a row lock re-checks its WHERE on the
 * row as committed). An instance is one region's view (KeyRepository "Regions"); the views of one
 * store share its pool.
 */
export class PostgresKeyRepository implements KeyRepository {
  private readonly db: PgSession;
  private readonly access: PostgresAliasesAndGrants;
  private readonly intents: PostgresIntents;
  private readonly imports: PostgresImportedMaterial;
  private readonly records: PostgresRegionRecords;

  private constructor(
    private readonly shared: SharedStore,
    readonly region: string,
  ) {
    this.db = shared.db;
    this.access = new PostgresAliasesAndGrants(this.db, region);
    this.intents = shared.intents;
    this.imports = new PostgresImportedMaterial(this.db, region, this.intents);
    this.records = new PostgresRegionRecords(this.db, region);
  }

  /** Connects and migrates (exactly once among replicas opening a fresh database together); the home region's view. */
  static async open(
    url: string,
    { poolSize = 10, onIdleError = () => undefined, connectTimeoutMs = 10000, ownerId = crypto.randomUUID(), region = DEFAULT_REGION }: PostgresStoreOptions = {},
  ): Promise<PostgresKeyRepository> {
    const pool = new Pool({ connectionString: url, max: poolSize, application_name: 'qkms', connectionTimeoutMillis: connectTimeoutMs });
    pool.on('error', onIdleError); // unhandled, an idle connection's error would end the process
    try {
      const { from } = await migrate(pool, region);
      const db = new PgSession(pool);
      const shared = { db, intents: new PostgresIntents(db, ownerId), probeAndAnchor: new PostgresProbeAndAnchor(db), isNew: from === 0, ownerId, views: new Map() };
      return new PostgresKeyRepository(shared, region).inRegion(region);
    } catch (err) {
      await pool.end();
      throw err;
    }
  }

  /** Whether opening it created the schema: the store is new (audit-startup.ts refuses a trail it cannot own). */
  get isNew(): boolean {
    return this.shared.isNew;
  }

  get ownerId(): string {
    return this.shared.ownerId;
  }

  inRegion(region: string): PostgresKeyRepository {
    let view = this.shared.views.get(region);
    if (!view) {
      view = region === this.region ? this : new PostgresKeyRepository(this.shared, region);
      this.shared.views.set(region, view);
    }
    return view;
  }

  keyRegions: KeyRepository['keyRegions'] = (keyId) => this.records.keyRegions(keyId);
  regionsWithKeys: KeyRepository['regionsWithKeys'] = () => this.records.regionsWithKeys();
  insertReplica: KeyRepository['insertReplica'] = (key, tags) => this.records.insertReplica(key, tags);
  setPrimaryRegion: KeyRepository['setPrimaryRegion'] = (keyId, from, to) => this.records.setPrimaryRegion(keyId, from, to);
  deleteRegionRecord: KeyRepository['deleteRegionRecord'] = (keyId) => this.records.deleteRegionRecord(keyId);

  /** The rate-limit buckets in this database, shared by every replica. */
  rateBuckets(): TokenPool {
    return new PostgresTokenPool(this.db);
  }

  async recordKeyIntent(intent: { keyId: string; objectIds: Record<string, string>; createdAt: Date }): Promise<MaterialIntent> {
    return this.intents.insertIntent(this.db.pool, { keyId: intent.keyId, version: 1, purpose: 'create', objectIds: intent.objectIds, createdAt: intent.createdAt });
  }

  async activateKey(intent: MaterialIntent, key: KeyRecord, materialId: string, tags: Tag[]): Promise<void> {
    await this.db.tx(async (c) => {
      await this.intents.dropIntent(c, intent);
      await this.records.insertKey(c, key, intent.version, tags);
      await this.insertMaterial(c, intent, materialId);
    });
  }

  async insertExternalKey(key: KeyRecord, tags: Tag[]): Promise<void> {
    if (key.origin !== 'EXTERNAL' || key.state !== 'PendingImport' || key.currentMaterialVersion !== 0) {
      throw new Error(`insertExternalKey takes an EXTERNAL key in PendingImport without material, not ${key.origin} ${key.state} at version ${key.currentMaterialVersion}`);
    }
    await this.db.tx((c) => this.records.insertKey(c, key, 0, tags));
  }

  async reserveVersion(
    keyId: string,
    request: { rotationType: 'AUTOMATIC' | 'ON_DEMAND'; objectIds: Record<string, string>; createdAt: Date; dueBy?: Date; onDemandLimit?: number },
  ): Promise<MaterialIntent | ReserveRefusal> {
    return this.db.tx(
      async (c): Promise<MaterialIntent | ReserveRefusal> => {
        // Holds every record's lock to the end: concurrent reservations of one key (from any region)
        // take turns, and each counts the quota with the ones before it committed.
        const records = await this.db.lockRecords(c, keyId);
        const key = records.find((r) => r.region === this.region);
        const isDue = !request.dueBy || (key?.next_rotation_date != null && key.next_rotation_date <= request.dueBy);
        if (!key || key.state !== 'Enabled' || key.deletion_started !== null || !isDue) return 'state';
        const version = Math.max(...records.map((r) => r.last_version)) + 1; // reserved on every record
        await c.query('UPDATE keys SET last_version = $1 WHERE key_id = $2', [version, keyId]);
        if (request.onDemandLimit !== undefined) {
          const [{ n }] = await this.db.rows<{ n: number }>(
            `SELECT (SELECT count(*) FROM key_materials WHERE key_id = $1 AND rotation_type = 'ON_DEMAND')
                  + (SELECT count(*) FROM material_intents WHERE key_id = $1 AND rotation_type = 'ON_DEMAND') AS n`,
            [keyId], c,
          );
          if (Number(n) >= request.onDemandLimit) return 'quota'; // rolled back: the refusal uses no version
        }
        return this.intents.insertIntent(c, { keyId, version, purpose: 'rotate', rotationType: request.rotationType, objectIds: request.objectIds, createdAt: request.createdAt });
      },
      { rollback: (v) => v === 'quota' },
    );
  }

  async activateRotation(intent: MaterialIntent, materialId: string, nextRotation?: { periodDays: number; nextRotationDate: Date }): Promise<void> {
    await this.db.tx(async (c) => {
      await this.db.lockRecords(c, intent.keyId);
      await this.intents.dropIntent(c, intent);
      await this.insertMaterial(c, intent, materialId);
      await c.query('UPDATE keys SET current_material_version = greatest(current_material_version, $1) WHERE key_id = $2', [intent.version, intent.keyId]);
      if (nextRotation) {
        // Only while the settings are still the ones the rotation was made under: an Enable- or
        // DisableKeyRotation acknowledged while its objects were being made stands.
        await c.query('UPDATE keys SET next_rotation_date = $1 WHERE key_id = $2 AND rotation_period_days = $3 AND next_rotation_date < $1', [nextRotation.nextRotationDate, intent.keyId, nextRotation.periodDays]);
      }
    });
  }

  private async insertMaterial(c: PoolClient, intent: MaterialIntent, materialId: string): Promise<void> {
    await c.query('INSERT INTO key_materials (key_id, version, material_id, created_at, rotation_type, object_ids) VALUES ($1, $2, $3, $4, $5, $6)', [
      intent.keyId, intent.version, materialId, intent.createdAt, intent.rotationType ?? null, JSON.stringify(objectIdsOf(intent.objects)),
    ]);
  }

  async getKey(keyId: string): Promise<KeyRecord | undefined> {
    const [row] = await this.db.rows<KeyRow>('SELECT * FROM keys WHERE key_id = $1 AND region = $2', [keyId, this.region]);
    return row && rowToKey(row);
  }

  async getMaterial(keyId: string, version: number): Promise<KeyMaterial | undefined> {
    // The version comes from a client's ciphertext (uint32); beyond the column's range none exists.
    if (version > MAX_INTEGER) return undefined;
    const [row] = await this.db.rows<MaterialRow>('SELECT * FROM key_materials WHERE key_id = $1 AND version = $2', [keyId, version]);
    return row && rowToMaterial(row);
  }

  async listMaterials(): Promise<KeyMaterial[]> {
    return (await this.db.rows<MaterialRow>('SELECT * FROM key_materials ORDER BY key_id, version')).map(rowToMaterial);
  }

  async listMaterialsOf(keyId: string): Promise<KeyMaterial[]> {
    return (await this.db.rows<MaterialRow>('SELECT * FROM key_materials WHERE key_id = $1 ORDER BY version', [keyId])).map(rowToMaterial);
  }

  async transitionState(keyId: string, from: readonly KeyState[], change: StateChange): Promise<boolean> {
    const text = `UPDATE keys SET state = $1, deletion_date = $2, pending_window_days = $3
                  WHERE key_id = $4 AND region = $5 AND deletion_started IS NULL AND state = ANY($6::text[])`;
    return (await this.db.changes(text, [change.state, change.deletionDate, change.pendingWindowDays, keyId, this.region, [...from]])) === 1;
  }

  async beginDeletion(keyId: string, now: Date): Promise<boolean> {
    const text = `UPDATE keys SET deletion_started = $3 WHERE key_id = $1 AND region = $2 AND state = 'PendingDeletion' AND deletion_date <= $3 AND deletion_started IS NULL`;
    return (await this.db.changes(text, [keyId, this.region, now])) === 1;
  }

  async listKeys(afterPosition: number, limit: number): Promise<Array<{ keyId: string; position: number }>> {
    const rows = await this.db.rows<{ key_id: string; position: string }>(
      'SELECT key_id, position FROM keys WHERE region = $1 AND position > $2 ORDER BY position LIMIT $3', [this.region, afterPosition, limit],
    );
    return rows.map((r) => ({ keyId: r.key_id, position: Number(r.position) }));
  }

  /**
   * Also a PendingReplicaDeletion primary once no other region holds a record, and a record in
   * that state that is no longer the primary (the primary moved while its deletion was scheduled):
   * its waiting period may begin. Left waiting, it and a new primary scheduled in turn would wait
   * for each other.
   */
  async keysDueForDeletion(now: Date): Promise<string[]> {
    const text = `SELECT key_id FROM keys k WHERE region = $1 AND (
                    deletion_started IS NOT NULL OR (state = 'PendingDeletion' AND deletion_date <= $2)
                    OR (state = 'PendingReplicaDeletion' AND (primary_region IS DISTINCT FROM region
                        OR NOT EXISTS (SELECT 1 FROM keys o WHERE o.key_id = k.key_id AND o.region <> k.region))))
                  ORDER BY position`;
    return (await this.db.rows<{ key_id: string }>(text, [this.region, now])).map((r) => r.key_id);
  }

  /** A multi-Region key rotates once, from its primary's region (its material is shared). */
  async keysDueForRotation(now: Date): Promise<string[]> {
    const text = `SELECT key_id FROM keys WHERE region = $1 AND (primary_region IS NULL OR primary_region = $1)
                    AND state = 'Enabled' AND deletion_started IS NULL AND origin <> 'EXTERNAL' AND next_rotation_date <= $2
                  ORDER BY position`;
    return (await this.db.rows<{ key_id: string }>(text, [this.region, now])).map((r) => r.key_id);
  }

  deleteKey: KeyRepository['deleteKey'] = (keyId) => this.records.deleteKey(keyId);

  async setDescription(keyId: string, description: string): Promise<void> {
    await this.db.pool.query('UPDATE keys SET description = $1 WHERE key_id = $2 AND region = $3', [description, keyId, this.region]);
  }

  async setPolicy(keyId: string, policy: string): Promise<void> {
    await this.db.pool.query('UPDATE keys SET policy = $1 WHERE key_id = $2 AND region = $3', [policy, keyId, this.region]);
  }

  /** Checked on the view's record, written on every record (rotation is shared). */
  async setRotation(keyId: string, rotation: { periodDays: number; nextRotationDate: Date } | null): Promise<boolean> {
    return this.db.tx(async (c) => {
      const key = (await this.db.lockRecords(c, keyId)).find((r) => r.region === this.region);
      if (!key || key.state !== 'Enabled' || key.deletion_started !== null) return false;
      await c.query('UPDATE keys SET rotation_period_days = $1, next_rotation_date = $2 WHERE key_id = $3', [rotation?.periodDays ?? null, rotation?.nextRotationDate ?? null, keyId]);
      return true;
    });
  }

  async listTags(keyId: string): Promise<Tag[]> {
    const rows = await this.db.rows<{ tag_key: string; tag_value: string }>('SELECT tag_key, tag_value FROM tags WHERE key_id = $1 AND region = $2 ORDER BY tag_key', [keyId, this.region]);
    return rows.map((r) => ({ key: r.tag_key, value: r.tag_value }));
  }

  async changeTags(keyId: string, put: Tag[], remove: string[]): Promise<void> {
    await this.db.tx(async (c) => {
      for (const t of put) {
        await c.query(
          'INSERT INTO tags (key_id, region, tag_key, tag_value) VALUES ($1, $2, $3, $4) ON CONFLICT (key_id, region, tag_key) DO UPDATE SET tag_value = excluded.tag_value',
          [keyId, this.region, t.key, t.value],
        );
      }
      if (remove.length > 0) await c.query('DELETE FROM tags WHERE key_id = $1 AND region = $2 AND tag_key = ANY($3::text[])', [keyId, this.region, remove]);
    });
  }

  reserveImport: KeyRepository['reserveImport'] = (keyId, request) => this.imports.reserveImport(keyId, request);
  activateImport: KeyRepository['activateImport'] = (intent, imported) => this.imports.activateImport(intent, imported);
  discardImportedMaterial: KeyRepository['discardImportedMaterial'] = (keyId, version, onlyIfExpiredBy) => this.imports.discardImportedMaterial(keyId, version, onlyIfExpiredBy);
  rotateToImportedMaterial: KeyRepository['rotateToImportedMaterial'] = (keyId, at, limit) => this.imports.rotateToImportedMaterial(keyId, at, limit);
  materialsDueToExpire: KeyRepository['materialsDueToExpire'] = (now) => this.imports.materialsDueToExpire(now);
  recordImportParameters: KeyRepository['recordImportParameters'] = (parameters) => this.imports.recordImportParameters(parameters);
  getImportParameters: KeyRepository['getImportParameters'] = (parametersId) => this.imports.getImportParameters(parametersId);
  listImportParameters: KeyRepository['listImportParameters'] = (keyId) => this.imports.listImportParameters(keyId);
  deleteImportParameters: KeyRepository['deleteImportParameters'] = (parametersId) => this.imports.deleteImportParameters(parametersId);
  aliasTarget = (aliasName: string): Promise<string | undefined> => this.access.aliasTarget(aliasName);
  getAlias = (aliasName: string): Promise<Alias | undefined> => this.access.getAlias(aliasName);
  insertAlias = (alias: Alias, maxPerKey: number): Promise<AliasInsert> => this.access.insertAlias(alias, maxPerKey);
  retargetAlias = (aliasName: string, targetKeyId: string, at: Date, maxPerKey: number): Promise<boolean> => this.access.retargetAlias(aliasName, targetKeyId, at, maxPerKey);
  deleteAlias = (aliasName: string): Promise<void> => this.access.deleteAlias(aliasName);
  countAliases = (keyId: string): Promise<number> => this.access.countAliases(keyId);
  listAliases = (afterPosition: number, limit: number, keyId?: string): Promise<Array<Alias & { position: number }>> => this.access.listAliases(afterPosition, limit, keyId);
  grantTokenHashes = (grantId: string): Promise<Buffer[]> => this.access.grantTokenHashes(grantId);
  insertGrant = (grant: Grant, tokenHash: Buffer, maxPerKey: number, sameAs?: (existing: Grant) => boolean): Promise<string | 'quota'> => this.access.insertGrant(grant, tokenHash, maxPerKey, sameAs);
  getGrant = (grantId: string): Promise<Grant | undefined> => this.access.getGrant(grantId);
  listGrants: KeyRepository['listGrants'] = (filter, afterPosition, limit) => this.access.listGrants(filter, afterPosition, limit);
  countGrants = (keyId: string): Promise<number> => this.access.countGrants(keyId);
  deleteGrant = (grantId: string): Promise<void> => this.access.deleteGrant(grantId);
  listIntents: KeyRepository['listIntents'] = () => this.intents.listIntents();
  abandonIntent: KeyRepository['abandonIntent'] = (intentId) => this.intents.abandonIntent(intentId);
  deleteIntent: KeyRepository['deleteIntent'] = (intentId) => this.intents.deleteIntent(intentId);
  probeWrite: KeyRepository['probeWrite'] = (timeoutMs) => this.shared.probeAndAnchor.probeWrite(timeoutMs);
  getAuditAnchor: KeyRepository['getAuditAnchor'] = () => this.shared.probeAndAnchor.getAuditAnchor();
  setAuditAnchor: KeyRepository['setAuditAnchor'] = (anchor) => this.shared.probeAndAnchor.setAuditAnchor(anchor);


  /**
   * One statement for the batch. The records named are locked first (KEY SHARE, in the order every
   * writer locks a key id's records: PgSession.lockRecords), and entries only of those still there
   * are written: one of a record removed meanwhile is dropped rather than failing the batch, and the
   * batch never deadlocks with a removal, nor with another batch (upserts in the same order). One
   * entry per record, the newest: an upsert cannot touch one row twice.
   */
  async recordKeyUsage(batch: readonly KeyLastUsage[]): Promise<void> {
    const newest = new Map<string, KeyLastUsage>();
    for (const u of batch) {
      const id = JSON.stringify([u.keyId, u.region]);
      const seen = newest.get(id);
      if (!seen || seen.at < u.at) newest.set(id, u);
    }
    const entries = [...newest.values()];
    if (entries.length === 0) return;
    await this.db.rows(
      `WITH u AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[]) AS u (key_id, region, operation, used_at, request_id)
       ), live AS (
         SELECT key_id, region FROM keys WHERE (key_id, region) IN (SELECT key_id, region FROM u)
         ORDER BY key_id COLLATE "C", region COLLATE "C" FOR KEY SHARE
       )
       INSERT INTO key_last_usage (key_id, region, operation, used_at, request_id)
       SELECT u.key_id, u.region, u.operation, u.used_at, u.request_id FROM u JOIN live USING (key_id, region)
       ORDER BY u.key_id COLLATE "C", u.region COLLATE "C"
       ON CONFLICT (key_id, region) DO UPDATE SET operation = excluded.operation, used_at = excluded.used_at, request_id = excluded.request_id
        WHERE excluded.used_at > key_last_usage.used_at`,
      [entries.map((u) => u.keyId), entries.map((u) => u.region), entries.map((u) => u.operation), entries.map((u) => u.at), entries.map((u) => u.requestId)],
    );
  }

  async getKeyUsage(keyId: string): Promise<{ usage?: KeyLastUsage; trackingStartedAt: Date }> {
    const [row] = await this.db.rows<{ operation: string; used_at: Date; request_id: string }>(
      'SELECT operation, used_at, request_id FROM key_last_usage WHERE key_id = $1 AND region = $2', [keyId, this.region],
    );
    const [{ started_at }] = await this.db.rows<{ started_at: Date }>('SELECT started_at FROM usage_tracking WHERE id = 1');
    return { ...(row && { usage: { keyId, region: this.region, operation: row.operation, at: row.used_at, requestId: row.request_id } }), trackingStartedAt: started_at };
  }

  /** Closes the pool every view shares; closing it again (from any view) waits for the first close. */
  async close(): Promise<void> {
    this.shared.closing ??= this.db.pool.end();
    await this.shared.closing;
  }
}
