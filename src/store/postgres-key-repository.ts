import crypto from 'node:crypto';
import { Pool, type PoolClient } from 'pg';
import type { Alias, AliasInsert, AuditAnchor, Grant, KeyLastUsage, KeyMaterial, KeyRecord, KeyRepository, MaterialIntent, ReserveRefusal, StateChange, Tag } from '../domain/key-repository';
import { materialObjects, objectIdsOf } from '../domain/key-repository';
import type { KeyState } from '../domain/key-state';
import type { IntentInsert } from './intent-insert';
import { PostgresAliasesAndGrants } from './postgres-aliases-and-grants';
import { PostgresImportedMaterial } from './postgres-imported-material';
import { migrate } from './postgres-migrations';
import { rowToIntent, rowToKey, rowToMaterial, type IntentRow, type KeyRow, type MaterialRow } from './postgres-rows';
import { PostgresTokenPool } from './postgres-token-pool';
import type { TokenPool } from './token-pool';
import { PgSession, type Queryable } from './postgres-session';

export interface PostgresStoreOptions {
  /** Connections per process; each gateway replica has its own pool. */
  poolSize?: number;
  /** A pooled connection that failed while idle (server restart, network): the pool replaces it. */
  onIdleError?: (err: Error) => void;
  /** How long a statement waits for a free connection before it fails (the database is down or overloaded). */
  connectTimeoutMs?: number;
  /** Recorded on the intents it records (the replica's ReplicaCoordination.ownerId); a fresh id when not given. */
  ownerId?: string;
}

/** PostgreSQL's `integer` (versions). */
const MAX_INTEGER = 2 ** 31 - 1;

/**
 * The key store on PostgreSQL, for gateway replicas sharing one database. Same contract as the
 * SQLite store (the repository contract suite runs on both). Several processes write at once, so
 * every check-then-act is one conditional statement or a transaction that first locks the row it
 * depends on (READ COMMITTED: a statement that waited for a row lock re-checks its WHERE on the
 * row as committed).
 */
export class PostgresKeyRepository implements KeyRepository {
  private readonly db: PgSession;
  private readonly access: PostgresAliasesAndGrants;
  private readonly imports: PostgresImportedMaterial;

  private constructor(
    pool: Pool,
    /** Whether opening it created the schema: the store is new (audit-startup.ts refuses a trail it cannot own). */
    readonly isNew: boolean,
    readonly ownerId: string,
  ) {
    this.db = new PgSession(pool);
    this.access = new PostgresAliasesAndGrants(this.db);
    this.imports = new PostgresImportedMaterial(this.db, { insertIntentIfFree: (on, i) => this.insertIntentIfFree(on, i), dropIntent: (c, i) => this.dropIntent(c, i) });
  }

  /** Connects and migrates (exactly once among replicas opening a fresh database together). */
  static async open(url: string, { poolSize = 10, onIdleError = () => undefined, connectTimeoutMs = 10000, ownerId = crypto.randomUUID() }: PostgresStoreOptions = {}): Promise<PostgresKeyRepository> {
    const pool = new Pool({ connectionString: url, max: poolSize, application_name: 'qkms', connectionTimeoutMillis: connectTimeoutMs });
    pool.on('error', onIdleError); // unhandled, an idle connection's error would end the process
    try {
      const { from } = await migrate(pool);
      return new PostgresKeyRepository(pool, from === 0, ownerId);
    } catch (err) {
      await pool.end();
      throw err;
    }
  }

  /** The rate-limit buckets in this database, shared by every replica. */
  rateBuckets(): TokenPool {
    return new PostgresTokenPool(this.db);
  }

  async recordKeyIntent(intent: { keyId: string; objectIds: Record<string, string>; createdAt: Date }): Promise<MaterialIntent> {
    return this.insertIntent(this.db.pool, { keyId: intent.keyId, version: 1, purpose: 'create', objectIds: intent.objectIds, createdAt: intent.createdAt });
  }

  async activateKey(intent: MaterialIntent, key: KeyRecord, materialId: string, tags: Tag[]): Promise<void> {
    await this.db.tx(async (c) => {
      await this.dropIntent(c, intent);
      await this.insertKey(c, key, intent.version, tags);
      await this.insertMaterial(c, intent, materialId);
    });
  }

  async insertExternalKey(key: KeyRecord, tags: Tag[]): Promise<void> {
    if (key.origin !== 'EXTERNAL' || key.state !== 'PendingImport' || key.currentMaterialVersion !== 0) {
      throw new Error(`insertExternalKey takes an EXTERNAL key in PendingImport without material, not ${key.origin} ${key.state} at version ${key.currentMaterialVersion}`);
    }
    await this.db.tx((c) => this.insertKey(c, key, 0, tags));
  }

  /** The key's row, its current (and last reserved) version `version`, and its tags. */
  private async insertKey(c: PoolClient, key: KeyRecord, version: number, tags: Tag[]): Promise<void> {
    await c.query(
      `INSERT INTO keys (key_id, created_at, description, key_usage, key_spec, origin, state, current_material_version, last_version, policy, rotation_period_days, next_rotation_date)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $11)`,
      [key.keyId, key.createdAt, key.description, key.keyUsage, key.keySpec, key.origin, key.state, version, key.policy ?? null, key.rotation?.periodDays ?? null, key.rotation?.nextRotationDate ?? null],
    );
    for (const t of tags) await c.query('INSERT INTO tags (key_id, tag_key, tag_value) VALUES ($1, $2, $3)', [key.keyId, t.key, t.value]);
  }

  async reserveVersion(
    keyId: string,
    request: { rotationType: 'AUTOMATIC' | 'ON_DEMAND'; objectIds: Record<string, string>; createdAt: Date; dueBy?: Date; onDemandLimit?: number },
  ): Promise<MaterialIntent | ReserveRefusal> {
    return this.db.tx(
      async (c): Promise<MaterialIntent | ReserveRefusal> => {
        // Holds the key's row lock to the end: concurrent reservations of one key take turns, and each
        // counts the quota with the ones before it committed.
        const [reserved] = await this.db.rows<{ last_version: number }>(
          `UPDATE keys SET last_version = last_version + 1
           WHERE key_id = $1 AND state = 'Enabled' AND deletion_started IS NULL AND ($2::timestamptz IS NULL OR next_rotation_date <= $2)
           RETURNING last_version`,
          [keyId, request.dueBy ?? null], c,
        );
        if (!reserved) return 'state';
        if (request.onDemandLimit !== undefined) {
          const [{ n }] = await this.db.rows<{ n: number }>(
            `SELECT (SELECT count(*) FROM key_materials WHERE key_id = $1 AND rotation_type = 'ON_DEMAND')
                  + (SELECT count(*) FROM material_intents WHERE key_id = $1 AND rotation_type = 'ON_DEMAND') AS n`,
            [keyId], c,
          );
          if (Number(n) >= request.onDemandLimit) return 'quota'; // rolled back: the refusal uses no version
        }
        return this.insertIntent(c, { keyId, version: reserved.last_version, purpose: 'rotate', rotationType: request.rotationType, objectIds: request.objectIds, createdAt: request.createdAt });
      },
      { rollback: (v) => v === 'quota' },
    );
  }

  async activateRotation(intent: MaterialIntent, materialId: string, nextRotation?: { periodDays: number; nextRotationDate: Date }): Promise<void> {
    await this.db.tx(async (c) => {
      await this.dropIntent(c, intent);
      await this.insertMaterial(c, intent, materialId);
      await c.query('UPDATE keys SET current_material_version = greatest(current_material_version, $1) WHERE key_id = $2', [intent.version, intent.keyId]);
      if (nextRotation) {
        // Only while the settings are still the ones the rotation was made under: an Enable- or
        // DisableKeyRotation acknowledged while its objects were being made stands.
        await c.query('UPDATE keys SET next_rotation_date = $1 WHERE key_id = $2 AND rotation_period_days = $3 AND next_rotation_date < $1', [nextRotation.nextRotationDate, intent.keyId, nextRotation.periodDays]);
      }
    });
  }

  async listIntents(): Promise<MaterialIntent[]> {
    return (await this.db.rows<IntentRow>('SELECT * FROM material_intents ORDER BY intent_id')).map(rowToIntent);
  }

  async abandonIntent(intentId: number): Promise<boolean> {
    // Waits for an activation holding the row; then the row is gone (activated) or still there.
    await this.db.pool.query('UPDATE material_intents SET abandoned_at = now() WHERE intent_id = $1 AND abandoned_at IS NULL', [intentId]);
    return (await this.db.rows('SELECT 1 FROM material_intents WHERE intent_id = $1', [intentId])).length === 1;
  }

  async deleteIntent(intentId: number): Promise<void> {
    await this.db.pool.query('DELETE FROM material_intents WHERE intent_id = $1', [intentId]);
  }

  private async insertIntent(on: Queryable, i: IntentInsert): Promise<MaterialIntent> {
    const intent = await this.insertIntentIfFree(on, i);
    if (!intent) throw new Error(`an intent for version ${i.version} of ${i.keyId} exists already`);
    return intent;
  }

  /** Undefined when an intent of that version exists (UNIQUE (key_id, version); one not yet committed is waited for). */
  private async insertIntentIfFree(on: Queryable, i: IntentInsert): Promise<MaterialIntent | undefined> {
    const [row] = await this.db.rows<{ intent_id: string }>(
      `INSERT INTO material_intents (key_id, version, purpose, rotation_type, object_ids, created_at, abandoned_at, owner) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (key_id, version) DO NOTHING RETURNING intent_id`,
      [i.keyId, i.version, i.purpose, i.rotationType ?? null, JSON.stringify(i.objectIds), i.createdAt, i.abandonedAt ?? null, this.ownerId], on,
    );
    return row && {
      intentId: Number(row.intent_id), keyId: i.keyId, version: i.version, purpose: i.purpose, ...(i.rotationType && { rotationType: i.rotationType }),
      objects: materialObjects(i.keyId, i.version, i.objectIds), createdAt: i.createdAt, owner: this.ownerId,
    };
  }

  /** Inside an activation's transaction: the intent must still be there and not being rolled back. */
  private async dropIntent(c: PoolClient, intent: MaterialIntent): Promise<void> {
    if ((await this.db.changes('DELETE FROM material_intents WHERE intent_id = $1 AND abandoned_at IS NULL', [intent.intentId], c)) !== 1) {
      throw new Error(`the intent for version ${intent.version} of ${intent.keyId} is gone or being rolled back: not activating it`);
    }
  }

  private async insertMaterial(c: PoolClient, intent: MaterialIntent, materialId: string): Promise<void> {
    await c.query('INSERT INTO key_materials (key_id, version, material_id, created_at, rotation_type, object_ids) VALUES ($1, $2, $3, $4, $5, $6)', [
      intent.keyId, intent.version, materialId, intent.createdAt, intent.rotationType ?? null, JSON.stringify(objectIdsOf(intent.objects)),
    ]);
  }

  async getKey(keyId: string): Promise<KeyRecord | undefined> {
    const [row] = await this.db.rows<KeyRow>('SELECT * FROM keys WHERE key_id = $1', [keyId]);
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
                  WHERE key_id = $4 AND deletion_started IS NULL AND state = ANY($5::text[])`;
    return (await this.db.changes(text, [change.state, change.deletionDate, change.pendingWindowDays, keyId, [...from]])) === 1;
  }

  async beginDeletion(keyId: string, now: Date): Promise<boolean> {
    const text = `UPDATE keys SET deletion_started = $2 WHERE key_id = $1 AND state = 'PendingDeletion' AND deletion_date <= $2 AND deletion_started IS NULL`;
    return (await this.db.changes(text, [keyId, now])) === 1;
  }

  async listKeys(afterPosition: number, limit: number): Promise<Array<{ keyId: string; position: number }>> {
    const rows = await this.db.rows<{ key_id: string; position: string }>('SELECT key_id, position FROM keys WHERE position > $1 ORDER BY position LIMIT $2', [afterPosition, limit]);
    return rows.map((r) => ({ keyId: r.key_id, position: Number(r.position) }));
  }

  async keysDueForDeletion(now: Date): Promise<string[]> {
    const text = "SELECT key_id FROM keys WHERE deletion_started IS NOT NULL OR (state = 'PendingDeletion' AND deletion_date <= $1) ORDER BY position";
    return (await this.db.rows<{ key_id: string }>(text, [now])).map((r) => r.key_id);
  }

  async keysDueForRotation(now: Date): Promise<string[]> {
    const text = "SELECT key_id FROM keys WHERE state = 'Enabled' AND deletion_started IS NULL AND origin <> 'EXTERNAL' AND next_rotation_date <= $1 ORDER BY position";
    return (await this.db.rows<{ key_id: string }>(text, [now])).map((r) => r.key_id);
  }

  async deleteKey(keyId: string): Promise<void> {
    await this.db.tx(async (c) => {
      // Cascades to materials, tags, aliases, grants and import parameters.
      if ((await this.db.changes('DELETE FROM keys WHERE key_id = $1 AND deletion_started IS NOT NULL', [keyId], c)) !== 1) {
        throw new Error(`refusing to delete ${keyId}: its deletion was not begun (beginDeletion)`);
      }
      await c.query('DELETE FROM material_intents WHERE key_id = $1', [keyId]);
    });
  }

  async setDescription(keyId: string, description: string): Promise<void> {
    await this.db.pool.query('UPDATE keys SET description = $1 WHERE key_id = $2', [description, keyId]);
  }

  async setPolicy(keyId: string, policy: string): Promise<void> {
    await this.db.pool.query('UPDATE keys SET policy = $1 WHERE key_id = $2', [policy, keyId]);
  }

  async setRotation(keyId: string, rotation: { periodDays: number; nextRotationDate: Date } | null): Promise<boolean> {
    const text = `UPDATE keys SET rotation_period_days = $1, next_rotation_date = $2 WHERE key_id = $3 AND state = 'Enabled' AND deletion_started IS NULL`;
    return (await this.db.changes(text, [rotation?.periodDays ?? null, rotation?.nextRotationDate ?? null, keyId])) === 1;
  }

  async listTags(keyId: string): Promise<Tag[]> {
    const rows = await this.db.rows<{ tag_key: string; tag_value: string }>('SELECT tag_key, tag_value FROM tags WHERE key_id = $1 ORDER BY tag_key', [keyId]);
    return rows.map((r) => ({ key: r.tag_key, value: r.tag_value }));
  }

  async changeTags(keyId: string, put: Tag[], remove: string[]): Promise<void> {
    await this.db.tx(async (c) => {
      for (const t of put) {
        await c.query('INSERT INTO tags (key_id, tag_key, tag_value) VALUES ($1, $2, $3) ON CONFLICT (key_id, tag_key) DO UPDATE SET tag_value = excluded.tag_value', [keyId, t.key, t.value]);
      }
      if (remove.length > 0) await c.query('DELETE FROM tags WHERE key_id = $1 AND tag_key = ANY($2::text[])', [keyId, remove]);
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
  addGrantToken = (grantId: string, tokenHash: Buffer): Promise<void> => this.access.addGrantToken(grantId, tokenHash);
  getGrant = (grantId: string): Promise<Grant | undefined> => this.access.getGrant(grantId);
  listGrants: KeyRepository['listGrants'] = (filter, afterPosition, limit) => this.access.listGrants(filter, afterPosition, limit);
  countGrants = (keyId: string): Promise<number> => this.access.countGrants(keyId);
  deleteGrant = (grantId: string): Promise<void> => this.access.deleteGrant(grantId);

  async probeWrite(timeoutMs: number): Promise<void> {
    // The statement timeout bounds a write waiting for a lock; the timer also bounds waiting for a
    // connection and a server that does not answer at all.
    const ms = Math.max(1, Math.round(timeoutMs));
    let timer: NodeJS.Timeout | undefined;
    const write = this.db.tx(async (c) => {
      await c.query(`SET LOCAL statement_timeout = ${ms}`);
      await c.query('SET LOCAL synchronous_commit = on'); // durable when COMMIT returns, whatever the server's default
      await c.query('INSERT INTO write_probe (id, at) VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET at = excluded.at');
    });
    try {
      await Promise.race([write, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`the PostgreSQL store took no write within ${ms} ms`)), ms)))]);
    } finally {
      clearTimeout(timer);
      write.catch(() => undefined); // settled later, after the timer won
    }
  }

  async getAuditAnchor(): Promise<AuditAnchor | 'adopt' | undefined> {
    const [row] = await this.db.rows<{ segment: number | null; end_offset: string | null; seq: string | null; head: string | null; mac: string | null }>(
      'SELECT segment, end_offset, seq, head, mac FROM audit_anchor WHERE id = 1',
    );
    if (!row) return undefined;
    if (row.segment === null || row.end_offset === null || row.seq === null || row.head === null || row.mac === null) return 'adopt';
    return { segment: row.segment, endOffset: Number(row.end_offset), seq: Number(row.seq), head: row.head, mac: row.mac };
  }

  async recordKeyUsage(entries: readonly KeyLastUsage[]): Promise<void> {
    if (entries.length === 0) return;
    await this.db.rows(
      `INSERT INTO key_last_usage (key_id, operation, used_at, request_id)
       SELECT u.key_id, u.operation, u.used_at, u.request_id
         FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) AS u (key_id, operation, used_at, request_id)
        WHERE EXISTS (SELECT 1 FROM keys WHERE keys.key_id = u.key_id)
       ON CONFLICT (key_id) DO UPDATE SET operation = excluded.operation, used_at = excluded.used_at, request_id = excluded.request_id
        WHERE excluded.used_at > key_last_usage.used_at`,
      [entries.map((u) => u.keyId), entries.map((u) => u.operation), entries.map((u) => u.at), entries.map((u) => u.requestId)],
    );
  }

  async getKeyUsage(keyId: string): Promise<{ usage?: KeyLastUsage; trackingStartedAt: Date }> {
    const [row] = await this.db.rows<{ operation: string; used_at: Date; request_id: string }>('SELECT operation, used_at, request_id FROM key_last_usage WHERE key_id = $1', [keyId]);
    const [{ started_at }] = await this.db.rows<{ started_at: Date }>('SELECT started_at FROM usage_tracking WHERE id = 1');
    return { ...(row && { usage: { keyId, operation: row.operation, at: row.used_at, requestId: row.request_id } }), trackingStartedAt: started_at };
  }

  async setAuditAnchor(a: AuditAnchor): Promise<void> {
    await this.db.tx(async (c) => {
      await c.query('SET LOCAL synchronous_commit = on'); // the audit log releases responses after this
      await c.query(
        `INSERT INTO audit_anchor (id, segment, end_offset, seq, head, mac) VALUES (1, $1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET segment = excluded.segment, end_offset = excluded.end_offset, seq = excluded.seq, head = excluded.head, mac = excluded.mac`,
        [a.segment, a.endOffset, a.seq, a.head, a.mac],
      );
    });
  }

  async close(): Promise<void> {
    await this.db.pool.end();
  }
}
