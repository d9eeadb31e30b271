import crypto from 'node:crypto';
import type {
  AuditAnchor, KeyMaterial, KeyRecord, KeyLastUsage, KeyRepository, MaterialIntent, ReserveRefusal, StateChange, Tag,
} from '../domain/key-repository';
import { materialObjects, objectIdsOf } from '../domain/key-repository';
import type { KeyState } from '../domain/key-state';
import type { IntentInsert } from './intent-insert';
import { SqliteAliasesAndGrants } from './sqlite-aliases-and-grants';
import { BUSY_TIMEOUT_MS, SqliteConnection } from './sqlite-connection';
import { SqliteImportedMaterial, type SqliteStoreAccess } from './sqlite-imported-material';
import { rowToIntent, rowToKey, rowToMaterial, toSeconds, type IntentRow, type KeyRow, type MaterialRow } from './sqlite-rows';

export { MIGRATIONS } from './sqlite-migrations';

/** The region of rows written before regions existed when none is given: the config's default QKMS_REGION. */
const DEFAULT_REGION = 'us-east-1';

/**
 * The embedded key store, seen from one region (KeyRepository, "Regions"): a key id has one row in
 * `keys` per region; tags, aliases, grants and last usage reference that row; materials, intents
 * and import parameters are the key id's. Every view of one store shares its connection and its
 * prepared statements: a view adds only its region to each statement's parameters.
 */
export class SqliteKeyRepository implements KeyRepository {
  readonly region: string;

  readonly ownerId: string;

  private readonly connection: SqliteConnection;

  private readonly imports: SqliteImportedMaterial;

  private readonly aliasesAndGrants: SqliteAliasesAndGrants;

  /**
   * `store`: the file (or ':memory:') to open, or an open store's connection (inRegion's views).
   * `region`: the view's region; when opening, also the home region that rows of releases before
   * regions belong to (QKMS_REGION). `isReadOnly`: for readers beside a running gateway (the
   * compliance report); never migrates. `ownerId`: recorded on the intents it records (a fresh id
   * when not given).
   */
  constructor(
    store: string | SqliteConnection,
    { isReadOnly = false, ownerId = crypto.randomUUID(), region = DEFAULT_REGION }: { isReadOnly?: boolean; ownerId?: string; region?: string } = {},
  ) {
    this.connection = typeof store === 'string' ? new SqliteConnection(store, region, ownerId, isReadOnly) : store;
    this.region = region;
    this.ownerId = this.connection.ownerId;
    if (!this.connection.views.has(region)) this.connection.views.set(region, this);
    const access: SqliteStoreAccess = {
      db: this.connection.db, region, sql: (text) => this.sql(text), reserveNextVersion: (keyId) => this.reserveNextVersion(keyId),
      insertIntent: (i) => this.insertIntent(i), dropIntent: (i) => this.dropIntent(i),
    };
    this.imports = new SqliteImportedMaterial(access);
    this.aliasesAndGrants = new SqliteAliasesAndGrants(access);
  }

  private get db() {
    return this.connection.db;
  }

  private sql(text: string) {
    return this.connection.sql(text);
  }

  inRegion(region: string): KeyRepository {
    return this.connection.views.get(region) ?? new SqliteKeyRepository(this.connection, { region });
  }

  async keyRegions(keyId: string): Promise<Array<{ region: string; state: KeyState }>> {
    return this.sql('SELECT region, state FROM keys WHERE key_id = ? ORDER BY region').all(keyId) as Array<{ region: string; state: KeyState }>;
  }

  async regionsWithKeys(): Promise<string[]> {
    return (this.sql('SELECT DISTINCT region FROM keys ORDER BY region').all() as Array<{ region: string }>).map((r) => r.region);
  }

  async insertReplica(key: KeyRecord, tags: Tag[]): Promise<'created' | 'exists' | 'gone'> {
    return this.db.transaction((): 'created' | 'exists' | 'gone' => {
      // A key id whose every record is being destroyed is gone: its material may be destroyed next.
      const source = this.sql('SELECT position FROM keys WHERE key_id = ? AND deletion_started IS NULL ORDER BY position LIMIT 1').get(key.keyId) as { position: number } | undefined;
      if (!source) return 'gone';
      if (this.sql('SELECT 1 FROM keys WHERE key_id = ? AND region = ?').get(key.keyId, this.region)) return 'exists';
      // The shared facts are the same on every record of the key id: the first one's are copied.
      this
        .sql(`INSERT INTO keys (key_id, region, created_at, description, policy, state, key_usage, key_spec, origin, current_material_version, last_version,
                                rotation_period_days, next_rotation_date, primary_region)
              SELECT key_id, ?, ?, ?, ?, ?, key_usage, key_spec, origin, current_material_version, last_version, rotation_period_days, next_rotation_date, primary_region
              FROM keys WHERE position = ?`)
        .run(this.region, toSeconds(key.createdAt), key.description, key.policy ?? null, key.state, source.position);
      this.insertTags(key.keyId, tags);
      return 'created';
    }).immediate();
  }

  async setPrimaryRegion(keyId: string, from: string, to: string): Promise<boolean> {
    const result = this
      .sql(`UPDATE keys SET primary_region = @to
            WHERE key_id = @keyId AND primary_region = @from AND EXISTS (SELECT 1 FROM keys t WHERE t.key_id = @keyId AND t.region = @to)`)
      .run({ keyId, from, to });
    return result.changes > 0;
  }

  async deleteRegionRecord(keyId: string): Promise<boolean> {
    return this.db.transaction((): boolean => {
      if (!this.sql('SELECT 1 FROM keys WHERE key_id = ? AND region <> ?').get(keyId, this.region)) return false;
      return this.sql('DELETE FROM keys WHERE key_id = ? AND region = ?').run(keyId, this.region).changes === 1; // cascades to its tags, aliases, grants, usage
    }).immediate();
  }

  async recordKeyIntent(intent: { keyId: string; objectIds: Record<string, string>; createdAt: Date }): Promise<MaterialIntent> {
    return this.insertIntent({ keyId: intent.keyId, version: 1, purpose: 'create', objectIds: intent.objectIds, createdAt: intent.createdAt });
  }

  async activateKey(intent: MaterialIntent, key: KeyRecord, materialId: string, tags: Tag[]): Promise<void> {
    this.db.transaction(() => {
      this.dropIntent(intent);
      this.insertKey(key, intent.version, tags);
      this.insertMaterial(intent, materialId);
    })();
  }

  async insertExternalKey(key: KeyRecord, tags: Tag[]): Promise<void> {
    if (key.origin !== 'EXTERNAL' || key.state !== 'PendingImport' || key.currentMaterialVersion !== 0) {
      throw new Error(`insertExternalKey takes an EXTERNAL key in PendingImport without material, not ${key.origin} ${key.state} at version ${key.currentMaterialVersion}`);
    }
    this.db.transaction(() => this.insertKey(key, 0, tags))();
  }

  /** The key's record in this region, its current (and last reserved) version `version`, and its tags. */
  private insertKey(key: KeyRecord, version: number, tags: Tag[]): void {
    this
      .sql(
        `INSERT INTO keys (key_id, region, created_at, description, key_usage, key_spec, origin, state, deletion_date, pending_window_days, current_material_version, last_version, policy,
                           rotation_period_days, next_rotation_date, primary_region)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        key.keyId, this.region, toSeconds(key.createdAt), key.description, key.keyUsage, key.keySpec, key.origin, key.state, version, version, key.policy ?? null,
        key.rotation?.periodDays ?? null, key.rotation ? toSeconds(key.rotation.nextRotationDate) : null, key.primaryRegion ?? null,
      );
    this.insertTags(key.keyId, tags);
  }

  private insertTags(keyId: string, tags: Tag[]): void {
    const tag = this.sql('INSERT INTO tags (key_id, region, tag_key, tag_value) VALUES (?, ?, ?, ?)');
    for (const t of tags) tag.run(keyId, this.region, t.key, t.value);
  }

  reserveImport: KeyRepository['reserveImport'] = async (keyId, request) => this.imports.reserveImport(keyId, request);
  activateImport: KeyRepository['activateImport'] = async (intent, imported) => this.imports.activateImport(intent, imported);
  discardImportedMaterial: KeyRepository['discardImportedMaterial'] = async (keyId, version, onlyIfExpiredBy) => this.imports.discardImportedMaterial(keyId, version, onlyIfExpiredBy);
  rotateToImportedMaterial: KeyRepository['rotateToImportedMaterial'] = async (keyId, at, limit) => this.imports.rotateToImportedMaterial(keyId, at, limit);
  materialsDueToExpire: KeyRepository['materialsDueToExpire'] = async (now) => this.imports.materialsDueToExpire(now);
  recordImportParameters: KeyRepository['recordImportParameters'] = async (parameters) => this.imports.recordImportParameters(parameters);
  getImportParameters: KeyRepository['getImportParameters'] = async (parametersId) => this.imports.getImportParameters(parametersId);
  listImportParameters: KeyRepository['listImportParameters'] = async (keyId) => this.imports.listImportParameters(keyId);
  deleteImportParameters: KeyRepository['deleteImportParameters'] = async (parametersId) => this.imports.deleteImportParameters(parametersId);

  aliasTarget: KeyRepository['aliasTarget'] = async (aliasName) => this.aliasesAndGrants.aliasTarget(aliasName);
  getAlias: KeyRepository['getAlias'] = async (aliasName) => this.aliasesAndGrants.getAlias(aliasName);
  insertAlias: KeyRepository['insertAlias'] = async (alias, maxPerKey) => this.aliasesAndGrants.insertAlias(alias, maxPerKey);
  retargetAlias: KeyRepository['retargetAlias'] = async (aliasName, targetKeyId, at, maxPerKey) => this.aliasesAndGrants.retargetAlias(aliasName, targetKeyId, at, maxPerKey);
  deleteAlias: KeyRepository['deleteAlias'] = async (aliasName) => this.aliasesAndGrants.deleteAlias(aliasName);
  countAliases: KeyRepository['countAliases'] = async (keyId) => this.aliasesAndGrants.countAliases(keyId);
  listAliases: KeyRepository['listAliases'] = async (afterPosition, limit, keyId) => this.aliasesAndGrants.listAliases(afterPosition, limit, keyId);
  grantTokenHashes: KeyRepository['grantTokenHashes'] = async (grantId) => this.aliasesAndGrants.grantTokenHashes(grantId);
  insertGrant: KeyRepository['insertGrant'] = async (grant, tokenHash, maxPerKey, sameAs) => this.aliasesAndGrants.insertGrant(grant, tokenHash, maxPerKey, sameAs);
  getGrant: KeyRepository['getGrant'] = async (grantId) => this.aliasesAndGrants.getGrant(grantId);
  listGrants: KeyRepository['listGrants'] = async (filter, afterPosition, limit) => this.aliasesAndGrants.listGrants(filter, afterPosition, limit);
  countGrants: KeyRepository['countGrants'] = async (keyId) => this.aliasesAndGrants.countGrants(keyId);
  deleteGrant: KeyRepository['deleteGrant'] = async (grantId) => this.aliasesAndGrants.deleteGrant(grantId);

  async reserveVersion(
    keyId: string,
    request: { rotationType: 'AUTOMATIC' | 'ON_DEMAND'; objectIds: Record<string, string>; createdAt: Date; dueBy?: Date; onDemandLimit?: number },
  ): Promise<MaterialIntent | ReserveRefusal> {
    return this.db.transaction((): MaterialIntent | ReserveRefusal => {
      const due = request.dueBy ? 'AND next_rotation_date <= ?' : '';
      const rotatable = this
        .sql(`SELECT 1 FROM keys WHERE key_id = ? AND region = ? AND state = 'Enabled' AND deletion_started IS NULL ${due}`)
        .get(...(request.dueBy ? [keyId, this.region, toSeconds(request.dueBy)] : [keyId, this.region]));
      if (!rotatable) return 'state';
      if (request.onDemandLimit !== undefined) {
        const { n } = this
          .sql(`SELECT (SELECT count(*) FROM key_materials WHERE key_id = @keyId AND rotation_type = 'ON_DEMAND')
                     + (SELECT count(*) FROM material_intents WHERE key_id = @keyId AND rotation_type = 'ON_DEMAND') AS n`)
          .get({ keyId }) as { n: number };
        if (n >= request.onDemandLimit) return 'quota';
      }
      const version = this.reserveNextVersion(keyId);
      return this.insertIntent({ keyId, version, purpose: 'rotate', rotationType: request.rotationType, objectIds: request.objectIds, createdAt: request.createdAt });
    }).immediate();
  }

  /** Inside a transaction: the next version number, on every record of the key id (they agree; max() if one did not). */
  private reserveNextVersion(keyId: string): number {
    const { next } = this.sql('SELECT max(last_version) + 1 AS next FROM keys WHERE key_id = ?').get(keyId) as { next: number };
    this.sql('UPDATE keys SET last_version = ? WHERE key_id = ?').run(next, keyId);
    return next;
  }

  async activateRotation(intent: MaterialIntent, materialId: string, nextRotation?: { periodDays: number; nextRotationDate: Date }): Promise<void> {
    this.db.transaction(() => {
      this.dropIntent(intent);
      this.insertMaterial(intent, materialId);
      this.sql('UPDATE keys SET current_material_version = max(current_material_version, ?) WHERE key_id = ?').run(intent.version, intent.keyId);
      if (nextRotation) {
        // Only while the settings are still the ones the rotation was made under: an Enable- or
        // DisableKeyRotation acknowledged while its objects were being made stands.
        const next = toSeconds(nextRotation.nextRotationDate);
        this.sql('UPDATE keys SET next_rotation_date = ? WHERE key_id = ? AND rotation_period_days = ? AND next_rotation_date < ?').run(next, intent.keyId, nextRotation.periodDays, next);
      }
    })();
  }

  async listIntents(): Promise<MaterialIntent[]> {
    return (this.sql('SELECT * FROM material_intents ORDER BY intent_id').all() as IntentRow[]).map(rowToIntent);
  }

  async abandonIntent(intentId: number): Promise<boolean> {
    this.sql('UPDATE material_intents SET abandoned_at = ? WHERE intent_id = ? AND abandoned_at IS NULL').run(Date.now() / 1000, intentId);
    return this.sql('SELECT 1 FROM material_intents WHERE intent_id = ?').get(intentId) !== undefined;
  }

  async deleteIntent(intentId: number): Promise<void> {
    this.sql('DELETE FROM material_intents WHERE intent_id = ?').run(intentId);
  }

  private insertIntent(i: IntentInsert): MaterialIntent {
    const { intent_id } = this
      .sql('INSERT INTO material_intents (key_id, version, purpose, rotation_type, object_ids, created_at, abandoned_at, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING intent_id')
      .get(i.keyId, i.version, i.purpose, i.rotationType ?? null, JSON.stringify(i.objectIds), toSeconds(i.createdAt), i.abandonedAt ? toSeconds(i.abandonedAt) : null, this.ownerId) as { intent_id: number };
    return {
      intentId: intent_id, keyId: i.keyId, version: i.version, purpose: i.purpose, ...(i.rotationType && { rotationType: i.rotationType }),
      objects: materialObjects(i.keyId, i.version, i.objectIds), createdAt: i.createdAt, owner: this.ownerId,
    };
  }

  /** Inside an activation's transaction: the intent must still be there and not being rolled back. */
  private dropIntent(intent: MaterialIntent): void {
    if (this.sql('DELETE FROM material_intents WHERE intent_id = ? AND abandoned_at IS NULL').run(intent.intentId).changes !== 1) {
      throw new Error(`the intent for version ${intent.version} of ${intent.keyId} is gone or being rolled back: not activating it`);
    }
  }

  private insertMaterial(intent: MaterialIntent, materialId: string): void {
    this
      .sql('INSERT INTO key_materials (key_id, version, material_id, created_at, rotation_type, object_ids) VALUES (?, ?, ?, ?, ?, ?)')
      .run(intent.keyId, intent.version, materialId, toSeconds(intent.createdAt), intent.rotationType ?? null, JSON.stringify(objectIdsOf(intent.objects)));
  }

  async getKey(keyId: string): Promise<KeyRecord | undefined> {
    const row = this.sql('SELECT * FROM keys WHERE key_id = ? AND region = ?').get(keyId, this.region) as KeyRow | undefined;
    return row && rowToKey(row);
  }

  async getMaterial(keyId: string, version: number): Promise<KeyMaterial | undefined> {
    const row = this.sql('SELECT * FROM key_materials WHERE key_id = ? AND version = ?').get(keyId, version) as MaterialRow | undefined;
    return row && rowToMaterial(row);
  }

  async listMaterials(): Promise<KeyMaterial[]> {
    return (this.sql('SELECT * FROM key_materials ORDER BY key_id, version').all() as MaterialRow[]).map(rowToMaterial);
  }

  async transitionState(keyId: string, from: readonly KeyState[], change: StateChange): Promise<boolean> {
    const result = this
      .sql(`UPDATE keys SET state = ?, deletion_date = ?, pending_window_days = ?
            WHERE key_id = ? AND region = ? AND deletion_started IS NULL AND state IN (SELECT value FROM json_each(?))`)
      .run(change.state, change.deletionDate && toSeconds(change.deletionDate), change.pendingWindowDays, keyId, this.region, JSON.stringify(from));
    return result.changes === 1;
  }

  async beginDeletion(keyId: string, now: Date): Promise<boolean> {
    const result = this
      .sql(`UPDATE keys SET deletion_started = ? WHERE key_id = ? AND region = ? AND state = 'PendingDeletion' AND deletion_date <= ? AND deletion_started IS NULL`)
      .run(toSeconds(now), keyId, this.region, toSeconds(now));
    return result.changes === 1;
  }

  async listKeys(afterPosition: number, limit: number): Promise<Array<{ keyId: string; position: number }>> {
    const rows = this.sql('SELECT key_id, position FROM keys WHERE region = ? AND position > ? ORDER BY position LIMIT ?').all(this.region, afterPosition, limit) as Array<{
      key_id: string;
      position: number;
    }>;
    return rows.map((r) => ({ keyId: r.key_id, position: r.position }));
  }

  async listTags(keyId: string): Promise<Tag[]> {
    const rows = this.sql('SELECT tag_key, tag_value FROM tags WHERE key_id = ? AND region = ? ORDER BY tag_key').all(keyId, this.region) as Array<{ tag_key: string; tag_value: string }>;
    return rows.map((r) => ({ key: r.tag_key, value: r.tag_value }));
  }

  async setDescription(keyId: string, description: string): Promise<void> {
    this.sql('UPDATE keys SET description = ? WHERE key_id = ? AND region = ?').run(description, keyId, this.region);
  }

  async setPolicy(keyId: string, policy: string): Promise<void> {
    this.sql('UPDATE keys SET policy = ? WHERE key_id = ? AND region = ?').run(policy, keyId, this.region);
  }

  async changeTags(keyId: string, put: Tag[], remove: string[]): Promise<void> {
    this.db.transaction(() => {
      const upsert = this.sql('INSERT INTO tags (key_id, region, tag_key, tag_value) VALUES (?, ?, ?, ?) ON CONFLICT (key_id, region, tag_key) DO UPDATE SET tag_value = excluded.tag_value');
      for (const t of put) upsert.run(keyId, this.region, t.key, t.value);
      const del = this.sql('DELETE FROM tags WHERE key_id = ? AND region = ? AND tag_key = ?');
      for (const k of remove) del.run(keyId, this.region, k);
    })();
  }

  async setRotation(keyId: string, rotation: { periodDays: number; nextRotationDate: Date } | null): Promise<boolean> {
    // One statement: the view's record is checked and every record written atomically.
    const result = this
      .sql(`UPDATE keys SET rotation_period_days = ?, next_rotation_date = ?
            WHERE key_id = ? AND EXISTS (SELECT 1 FROM keys v WHERE v.key_id = keys.key_id AND v.region = ? AND v.state = 'Enabled' AND v.deletion_started IS NULL)`)
      .run(rotation?.periodDays ?? null, rotation ? toSeconds(rotation.nextRotationDate) : null, keyId, this.region);
    return result.changes > 0;
  }

  async listMaterialsOf(keyId: string): Promise<KeyMaterial[]> {
    return (this.sql('SELECT * FROM key_materials WHERE key_id = ? ORDER BY version').all(keyId) as MaterialRow[]).map(rowToMaterial);
  }

  async keysDueForDeletion(now: Date): Promise<string[]> {
    // A primary waiting for its replicas' deletion (PendingReplicaDeletion) is due once it is the
    // key id's last record, and a record in that state that is no longer the primary (the primary
    // moved while its deletion was scheduled) at once: the lifecycle code then starts its own
    // waiting period. Left waiting, it and a new primary scheduled in turn would wait for each other.
    const rows = this
      .sql(`SELECT key_id FROM keys k WHERE region = ?
              AND (deletion_started IS NOT NULL OR (state = 'PendingDeletion' AND deletion_date <= ?)
                   OR (state = 'PendingReplicaDeletion' AND (primary_region IS NOT region
                       OR NOT EXISTS (SELECT 1 FROM keys o WHERE o.key_id = k.key_id AND o.region <> k.region))))
            ORDER BY position`)
      .all(this.region, toSeconds(now)) as Array<{ key_id: string }>;
    return rows.map((r) => r.key_id);
  }

  async keysDueForRotation(now: Date): Promise<string[]> {
    // A multi-Region key's material is one: it rotates once, from its primary's region.
    const rows = this
      .sql(`SELECT key_id FROM keys WHERE region = ? AND (primary_region IS NULL OR primary_region = region)
              AND state = 'Enabled' AND deletion_started IS NULL AND origin <> 'EXTERNAL' AND next_rotation_date <= ? ORDER BY position`)
      .all(this.region, toSeconds(now)) as Array<{ key_id: string }>;
    return rows.map((r) => r.key_id);
  }

  async deleteKey(keyId: string): Promise<void> {
    this.db.transaction(() => {
      if (this.sql('SELECT 1 FROM keys WHERE key_id = ? AND region <> ?').get(keyId, this.region)) {
        throw new Error(`refusing to delete ${keyId} with its material: another region holds a record of it (deleteRegionRecord)`);
      }
      const deleted = this.sql('DELETE FROM keys WHERE key_id = ? AND region = ? AND deletion_started IS NOT NULL').run(keyId, this.region); // cascades to tags, aliases, grants, usage
      if (deleted.changes !== 1) throw new Error(`refusing to delete ${keyId}: its deletion was not begun (beginDeletion)`);
      for (const table of ['key_materials', 'material_intents', 'import_parameters'] as const) this.sql(`DELETE FROM ${table} WHERE key_id = ?`).run(keyId);
    })();
  }

  async probeWrite(timeoutMs: number): Promise<void> {
    // better-sqlite3 is synchronous: a writer holding the lock would block the event loop for the
    // whole busy_timeout (5 s), so the probe waits for the lock only `timeoutMs`.
    this.db.pragma(`busy_timeout = ${Math.round(timeoutMs)}`);
    try {
      this.sql('INSERT INTO write_probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at').run(Date.now() / 1000);
    } finally {
      this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    }
  }

  async getAuditAnchor(): Promise<AuditAnchor | 'adopt' | undefined> {
    const row = this.sql('SELECT segment, end_offset, seq, head, mac FROM audit_anchor WHERE id = 1').get() as
      | { segment: number | null; end_offset: number | null; seq: number | null; head: string | null; mac: string | null }
      | undefined;
    if (!row) return undefined;
    if (row.segment === null || row.end_offset === null || row.seq === null || row.head === null || row.mac === null) return 'adopt';
    return { segment: row.segment, endOffset: row.end_offset, seq: row.seq, head: row.head, mac: row.mac };
  }

  async setAuditAnchor(a: AuditAnchor): Promise<void> {
    this.sql('INSERT INTO audit_anchor (id, segment, end_offset, seq, head, mac) VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET segment = excluded.segment, end_offset = excluded.end_offset, seq = excluded.seq, head = excluded.head, mac = excluded.mac')
      .run(a.segment, a.endOffset, a.seq, a.head, a.mac);
  }

  async recordKeyUsage(entries: readonly KeyLastUsage[]): Promise<void> {
    const upsert = this.sql(`INSERT INTO key_last_usage (key_id, region, operation, used_at, request_id)
       SELECT @keyId, @region, @operation, @at, @requestId WHERE EXISTS (SELECT 1 FROM keys WHERE key_id = @keyId AND region = @region)
       ON CONFLICT (key_id, region) DO UPDATE SET operation = excluded.operation, used_at = excluded.used_at, request_id = excluded.request_id
       WHERE excluded.used_at > key_last_usage.used_at`);
    this.db.transaction(() => {
      for (const u of entries) upsert.run({ keyId: u.keyId, region: u.region, operation: u.operation, at: toSeconds(u.at), requestId: u.requestId });
    })();
  }

  async getKeyUsage(keyId: string): Promise<{ usage?: KeyLastUsage; trackingStartedAt: Date }> {
    const row = this.sql('SELECT operation, used_at, request_id FROM key_last_usage WHERE key_id = ? AND region = ?').get(keyId, this.region) as
      | { operation: string; used_at: number; request_id: string }
      | undefined;
    const { started_at } = this.sql('SELECT started_at FROM usage_tracking WHERE id = 1').get() as { started_at: number };
    return {
      ...(row && { usage: { keyId, region: this.region, operation: row.operation, at: new Date(row.used_at * 1000), requestId: row.request_id } }),
      trackingStartedAt: new Date(started_at * 1000),
    };
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
