import crypto from 'node:crypto';
import path from 'node:path';
import Database from 'better-sqlite3';
import type {
  Alias, AliasInsert, AuditAnchor, ExpirationModel, Grant, GrantConstraints, ImportedMaterial, KeyMaterial, KeyOrigin, KeyRecord, KeyLastUsage, KeyRepository, MaterialIntent,
  ReserveRefusal, StateChange, Tag,
} from '../domain/key-repository';
import { legacyObjectIds, materialObjects, objectIdsOf } from '../domain/key-repository';
import type { KeySpec } from '../domain/key-spec';
import type { KeyState } from '../domain/key-state';
import type { IntentInsert } from './intent-insert';
import { SqliteImportedMaterial } from './sqlite-imported-material';

/**
 * Schema migrations, applied in order, each in one transaction; PRAGMA user_version records how
 * many ran. Append only. A migration is SQL, or a function for data SQL cannot compute.
 * Tables for aliases and grants exist from the start so lookups are real; their write operations
 * arrive with the issues that introduce them. Exported for the upgrade tests: its first n entries
 * are exactly the schema a release with n migrations wrote.
 */
export const MIGRATIONS: Array<string | ((db: Database.Database) => void)> = [
  `CREATE TABLE keys (
     position INTEGER PRIMARY KEY AUTOINCREMENT,
     key_id TEXT NOT NULL UNIQUE,
     created_at REAL NOT NULL,
     description TEXT NOT NULL,
     key_usage TEXT NOT NULL,
     key_spec TEXT NOT NULL,
     origin TEXT NOT NULL,
     state TEXT NOT NULL,
     deletion_date REAL,
     pending_window_days INTEGER,
     current_material_version INTEGER NOT NULL,
     policy TEXT
   );
   CREATE TABLE key_materials (
     key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
     version INTEGER NOT NULL,
     material_id TEXT NOT NULL,
     created_at REAL NOT NULL,
     PRIMARY KEY (key_id, version)
   );
   CREATE TABLE tags (
     key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
     tag_key TEXT NOT NULL,
     tag_value TEXT NOT NULL,
     PRIMARY KEY (key_id, tag_key)
   );
   CREATE TABLE aliases (
     alias_name TEXT PRIMARY KEY,
     target_key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
     created_at REAL NOT NULL,
     last_updated_at REAL NOT NULL
   );
   CREATE TABLE grants (
     grant_id TEXT PRIMARY KEY,
     key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
     token_hash BLOB NOT NULL,
     created_at REAL NOT NULL
   );`,
  `ALTER TABLE keys ADD COLUMN rotation_period_days INTEGER;
   ALTER TABLE keys ADD COLUMN next_rotation_date REAL;
   ALTER TABLE key_materials ADD COLUMN rotation_type TEXT;`,
  // Dropping the first grants table loses nothing: no operation ever wrote to it (CreateGrant
  // arrived with this migration), and its columns could not describe a grant anyway.
  `DROP TABLE grants;
   CREATE TABLE grants (
     position INTEGER PRIMARY KEY AUTOINCREMENT,
     grant_id TEXT NOT NULL UNIQUE,
     key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
     name TEXT,
     grantee_principal TEXT NOT NULL,
     retiring_principal TEXT,
     issuing_account TEXT NOT NULL,
     operations TEXT NOT NULL,
     constraints TEXT,
     created_at REAL NOT NULL
   );
   CREATE INDEX grants_by_key ON grants (key_id, grantee_principal);
   CREATE INDEX grants_by_retiring ON grants (retiring_principal);
   CREATE TABLE grant_tokens (
     grant_id TEXT NOT NULL REFERENCES grants(grant_id) ON DELETE CASCADE,
     token_hash BLOB NOT NULL,
     PRIMARY KEY (grant_id, token_hash)
   );`,
  // One row, rewritten by every readiness probe: a write that commits proves the store is writable.
  `CREATE TABLE write_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL);`,
  // Crash-safe key material (docs/crypto.md "Key material on the token"): each version records its
  // objects' random CKA_IDs (role -> hex, JSON); objects made before keep theirs (the label's bytes).
  // last_version reserves version numbers (never reused); material_intents is the write-ahead record
  // of objects being made (an intent being rolled back, abandoned_at set first, can no longer be
  // activated: the call that made it may still be running when the stale-intent sweep takes it for
  // abandoned); deletion_started marks a deletion under way (resumed after a crash).
  (db) => {
    db.exec(`ALTER TABLE key_materials ADD COLUMN object_ids TEXT;
             ALTER TABLE keys ADD COLUMN last_version INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE keys ADD COLUMN deletion_started REAL;
             CREATE TABLE material_intents (
               intent_id INTEGER PRIMARY KEY AUTOINCREMENT,
               key_id TEXT NOT NULL,
               version INTEGER NOT NULL,
               purpose TEXT NOT NULL CHECK (purpose IN ('create', 'rotate')),
               rotation_type TEXT,
               object_ids TEXT NOT NULL,
               created_at REAL NOT NULL,
               abandoned_at REAL,
               UNIQUE (key_id, version)
             );`);
    adoptRowsOfEarlierReleases(db);
  },
  // The audit trail's HSM-signed anchor (src/audit). The row of NULLs lets the next gateway start
  // adopt the trail as it finds it, exactly once (a trail written before anchors existed, or none);
  // from then on the row is always set, and a missing row means tampering.
  `CREATE TABLE audit_anchor (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     segment INTEGER,
     end_offset INTEGER,
     seq INTEGER,
     head TEXT,
     mac TEXT
   );
   INSERT INTO audit_anchor (id) VALUES (1);`,
  // The process that recorded each intent: replicas' start-up repair leaves a live one's alone.
  // Intents of earlier releases have none, and are rolled back at start as before.
  `ALTER TABLE material_intents ADD COLUMN owner TEXT;`,
  // GetKeyLastUsage: each key's last successful cryptographic operation, and when recording began.
  `CREATE TABLE key_last_usage (
     key_id TEXT PRIMARY KEY REFERENCES keys (key_id) ON DELETE CASCADE,
     operation TEXT NOT NULL,
     used_at REAL NOT NULL,
     request_id TEXT NOT NULL
   );
   CREATE TABLE usage_tracking (id INTEGER PRIMARY KEY CHECK (id = 1), started_at REAL NOT NULL);
   INSERT INTO usage_tracking (id, started_at) VALUES (1, (julianday('now') - 2440587.5) * 86400.0);`,
  // Imported key material (BYOK): each version's import facts (NULL for generated material);
  // intents that import or discard material; GetParametersForImport's wrapping key pairs, recorded
  // before they are made. SQLite cannot alter a CHECK, so material_intents is rebuilt with its rows
  // and its AUTOINCREMENT counter (an intent id is never reused). Deleted imported material has
  // object_ids '{}', never NULL: NULL marks a row of a release before schema 5, adopted at each open.
  (db) => {
    db.exec(`ALTER TABLE key_materials ADD COLUMN import_state TEXT CHECK (import_state IN ('IMPORTED', 'PENDING_IMPORT'));
             ALTER TABLE key_materials ADD COLUMN expiration_model TEXT;
             ALTER TABLE key_materials ADD COLUMN valid_to REAL;
             ALTER TABLE key_materials ADD COLUMN material_description TEXT;
             CREATE INDEX key_materials_expiring ON key_materials (valid_to) WHERE import_state = 'IMPORTED';
             CREATE TABLE import_parameters (
               parameters_id TEXT PRIMARY KEY,
               key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
               wrapping_key_spec TEXT NOT NULL,
               wrapping_algorithm TEXT NOT NULL,
               token_hash BLOB NOT NULL,
               objects TEXT NOT NULL,
               created_at REAL NOT NULL,
               valid_to REAL NOT NULL
             );
             CREATE INDEX import_parameters_by_key ON import_parameters (key_id);`);
    const counter = db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'material_intents'").get() as { seq: number } | undefined;
    db.exec(`CREATE TABLE material_intents_rebuilt (
               intent_id INTEGER PRIMARY KEY AUTOINCREMENT,
               key_id TEXT NOT NULL,
               version INTEGER NOT NULL,
               purpose TEXT NOT NULL CHECK (purpose IN ('create', 'rotate', 'import', 'discard')),
               rotation_type TEXT,
               object_ids TEXT NOT NULL,
               created_at REAL NOT NULL,
               abandoned_at REAL,
               owner TEXT,
               UNIQUE (key_id, version)
             );
             INSERT INTO material_intents_rebuilt (intent_id, key_id, version, purpose, rotation_type, object_ids, created_at, abandoned_at, owner)
               SELECT intent_id, key_id, version, purpose, rotation_type, object_ids, created_at, abandoned_at, owner FROM material_intents;
             DROP TABLE material_intents;
             ALTER TABLE material_intents_rebuilt RENAME TO material_intents;`);
    db.prepare("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'material_intents'").run(counter?.seq ?? 0);
    if (counter && !db.prepare("SELECT 1 FROM sqlite_sequence WHERE name = 'material_intents'").get()) {
      db.prepare("INSERT INTO sqlite_sequence (name, seq) VALUES ('material_intents', ?)").run(counter.seq);
    }
  },
];

/**
 * Rows a release before schema 5 wrote, adopted: their objects keep their ids (the label's bytes),
 * and no version they made is reserved again. Run by migration 5 and again at every writable open:
 * the previous release does not refuse a newer schema, so after a rollback to it (and a new
 * upgrade) its keys and rotations are in a schema-5 store without object ids or reserved versions.
 */
function adoptRowsOfEarlierReleases(db: Database.Database): void {
  db.exec(`UPDATE keys SET last_version = max(current_material_version, coalesce((SELECT max(version) FROM key_materials m WHERE m.key_id = keys.key_id), 0))
           WHERE last_version < max(current_material_version, coalesce((SELECT max(version) FROM key_materials m WHERE m.key_id = keys.key_id), 0))`);
  const rows = db.prepare('SELECT m.key_id, m.version, k.key_spec FROM key_materials m JOIN keys k USING (key_id) WHERE m.object_ids IS NULL').all() as Array<{ key_id: string; version: number; key_spec: KeySpec }>;
  const set = db.prepare('UPDATE key_materials SET object_ids = ? WHERE key_id = ? AND version = ?');
  for (const r of rows) set.run(JSON.stringify(legacyObjectIds(r.key_id, r.version, r.key_spec)), r.key_id, r.version);
}

interface KeyRow {
  key_id: string;
  created_at: number;
  description: string;
  key_usage: string;
  key_spec: string;
  origin: string;
  state: string;
  deletion_date: number | null;
  pending_window_days: number | null;
  deletion_started: number | null;
  current_material_version: number;
  policy: string | null;
  rotation_period_days: number | null;
  next_rotation_date: number | null;
}

/** How long a write waits for another process's write lock before SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5000;

const toDate = (seconds: number) => new Date(seconds * 1000);
const toSeconds = (d: Date) => d.getTime() / 1000;

/**
 * user_version through a read-only connection. A WAL-mode store needs its qkms.db-shm and
 * qkms.db-wal files even to be read; SQLite creates them when missing (and leaves them; the gateway
 * reuses them). This better-sqlite3 build has no URI filenames, so `immutable=1` is not available
 * as a fallback: a reader that cannot create them gets a message that says what to do.
 */
function readUserVersion(db: Database.Database, file: string): number {
  try {
    return db.pragma('user_version', { simple: true }) as number;
  } catch (err) {
    if ((err as { code?: string }).code !== 'SQLITE_READONLY_DIRECTORY') throw err;
    db.close();
    throw new Error(
      `SQLite must create ${path.basename(file)}-shm and -wal in ${path.dirname(file)} to read the store (WAL mode), and this user may not write there: ` +
        'run as a user who may write the data dir (nothing in the store is changed), or while the gateway runs (the files exist then, and read access to them is enough)',
      { cause: err },
    );
  }
}

export class SqliteKeyRepository implements KeyRepository {
  private readonly db: Database.Database;

  /** Prepared statements by SQL text: preparing costs more than running a point query. */
  private readonly statements = new Map<string, Database.Statement>();

  readonly ownerId: string;

  private readonly imports: SqliteImportedMaterial;

  /**
   * `isReadOnly`: for readers beside a running gateway (the compliance report); never migrates.
   * `ownerId`: recorded on the intents it records (a fresh id when not given).
   */
  constructor(file: string, { isReadOnly = false, ownerId = crypto.randomUUID() }: { isReadOnly?: boolean; ownerId?: string } = {}) {
    this.ownerId = ownerId;
    this.db = new Database(file, { readonly: isReadOnly, fileMustExist: isReadOnly });
    this.imports = new SqliteImportedMaterial({
      db: this.db, sql: (text) => this.sql(text), insertIntent: (i) => this.insertIntent(i), dropIntent: (i) => this.dropIntent(i),
    });
    this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    if (isReadOnly) {
      const version = readUserVersion(this.db, file);
      if (version !== MIGRATIONS.length) throw new Error(`the key store ${file} has schema version ${version}; this qkms reads version ${MIGRATIONS.length}`);
      return;
    }
    this.db.pragma('journal_mode = WAL'); // readers never block the writer; several processes may share the file
    this.db.pragma('synchronous = FULL'); // a key's metadata must survive a power cut once CreateKey answered
    this.db.pragma('foreign_keys = ON');
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      this.db.close();
      throw new Error(`the key store ${file} has schema version ${version}, newer than this qkms knows (${MIGRATIONS.length}): a later release wrote it; run that release`);
    }
    this.migrate();
    this.db.transaction(() => adoptRowsOfEarlierReleases(this.db))();
  }

  private sql(text: string): Database.Statement {
    let statement = this.statements.get(text);
    if (!statement) {
      statement = this.db.prepare(text);
      this.statements.set(text, statement);
    }
    return statement;
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

  /** The key's row, its current (and last reserved) version `version`, and its tags. */
  private insertKey(key: KeyRecord, version: number, tags: Tag[]): void {
    this
      .sql(
        `INSERT INTO keys (key_id, created_at, description, key_usage, key_spec, origin, state, deletion_date, pending_window_days, current_material_version, last_version, policy, rotation_period_days, next_rotation_date)
         VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?)`,
      )
      .run(
        key.keyId, toSeconds(key.createdAt), key.description, key.keyUsage, key.keySpec, key.origin, key.state, version, version, key.policy ?? null,
        key.rotation?.periodDays ?? null, key.rotation ? toSeconds(key.rotation.nextRotationDate) : null,
      );
    const tag = this.sql('INSERT INTO tags (key_id, tag_key, tag_value) VALUES (?, ?, ?)');
    for (const t of tags) tag.run(key.keyId, t.key, t.value);
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

  async reserveVersion(
    keyId: string,
    request: { rotationType: 'AUTOMATIC' | 'ON_DEMAND'; objectIds: Record<string, string>; createdAt: Date; dueBy?: Date; onDemandLimit?: number },
  ): Promise<MaterialIntent | ReserveRefusal> {
    const reserve = this.db.transaction((): MaterialIntent | ReserveRefusal => {
      const due = request.dueBy ? 'AND next_rotation_date <= ?' : '';
      const reserved = this
        .sql(`UPDATE keys SET last_version = last_version + 1 WHERE key_id = ? AND state = 'Enabled' AND deletion_started IS NULL ${due} RETURNING last_version`)
        .get(...(request.dueBy ? [keyId, toSeconds(request.dueBy)] : [keyId])) as { last_version: number } | undefined;
      if (!reserved) return 'state';
      if (request.onDemandLimit !== undefined) {
        const { n } = this
          .sql(`SELECT (SELECT count(*) FROM key_materials WHERE key_id = @keyId AND rotation_type = 'ON_DEMAND')
                     + (SELECT count(*) FROM material_intents WHERE key_id = @keyId AND rotation_type = 'ON_DEMAND') AS n`)
          .get({ keyId }) as { n: number };
        // Throwing rolls the reservation back with the transaction: the quota refusal uses no version.
        if (n >= request.onDemandLimit) throw QUOTA;
      }
      return this.insertIntent({ keyId, version: reserved.last_version, purpose: 'rotate', rotationType: request.rotationType, objectIds: request.objectIds, createdAt: request.createdAt });
    });
    try {
      return reserve.immediate();
    } catch (err) {
      if (err === QUOTA) return QUOTA;
      throw err;
    }
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
    const row = this.sql('SELECT * FROM keys WHERE key_id = ?').get(keyId) as KeyRow | undefined;
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
            WHERE key_id = ? AND deletion_started IS NULL AND state IN (SELECT value FROM json_each(?))`)
      .run(change.state, change.deletionDate && toSeconds(change.deletionDate), change.pendingWindowDays, keyId, JSON.stringify(from));
    return result.changes === 1;
  }

  async beginDeletion(keyId: string, now: Date): Promise<boolean> {
    const result = this
      .sql(`UPDATE keys SET deletion_started = ? WHERE key_id = ? AND state = 'PendingDeletion' AND deletion_date <= ? AND deletion_started IS NULL`)
      .run(toSeconds(now), keyId, toSeconds(now));
    return result.changes === 1;
  }

  async listKeys(afterPosition: number, limit: number): Promise<Array<{ keyId: string; position: number }>> {
    const rows = this.sql('SELECT key_id, position FROM keys WHERE position > ? ORDER BY position LIMIT ?').all(afterPosition, limit) as Array<{
      key_id: string;
      position: number;
    }>;
    return rows.map((r) => ({ keyId: r.key_id, position: r.position }));
  }

  async listTags(keyId: string): Promise<Tag[]> {
    const rows = this.sql('SELECT tag_key, tag_value FROM tags WHERE key_id = ? ORDER BY tag_key').all(keyId) as Array<{ tag_key: string; tag_value: string }>;
    return rows.map((r) => ({ key: r.tag_key, value: r.tag_value }));
  }

  async aliasTarget(aliasName: string): Promise<string | undefined> {
    const row = this.sql('SELECT target_key_id FROM aliases WHERE alias_name = ?').get(aliasName) as { target_key_id: string } | undefined;
    return row?.target_key_id;
  }

  async getAlias(aliasName: string): Promise<Alias | undefined> {
    const row = this.sql('SELECT rowid AS position, * FROM aliases WHERE alias_name = ?').get(aliasName) as AliasRow | undefined;
    return row && rowToAlias(row);
  }

  async insertAlias(a: Alias, maxPerKey: number): Promise<AliasInsert> {
    // IMMEDIATE: the count and the insert under the write lock, which other processes on the file wait for.
    return this.db.transaction((): AliasInsert => {
      if (this.sql('SELECT 1 FROM aliases WHERE alias_name = ?').get(a.aliasName)) return 'taken';
      if (this.aliasesOf(a.targetKeyId, a.aliasName) >= maxPerKey) return 'quota';
      this.sql('INSERT INTO aliases (alias_name, target_key_id, created_at, last_updated_at) VALUES (?, ?, ?, ?)').run(a.aliasName, a.targetKeyId, toSeconds(a.createdAt), toSeconds(a.lastUpdatedAt));
      return 'created';
    }).immediate();
  }

  async retargetAlias(aliasName: string, targetKeyId: string, at: Date, maxPerKey: number): Promise<boolean> {
    return this.db.transaction((): boolean => {
      if (this.aliasesOf(targetKeyId, aliasName) >= maxPerKey) return false;
      this.sql('UPDATE aliases SET target_key_id = ?, last_updated_at = ? WHERE alias_name = ?').run(targetKeyId, toSeconds(at), aliasName);
      return true;
    }).immediate();
  }

  /** The key's aliases other than `except`. */
  private aliasesOf(keyId: string, except: string): number {
    return (this.sql('SELECT count(*) AS n FROM aliases WHERE target_key_id = ? AND alias_name <> ?').get(keyId, except) as { n: number }).n;
  }

  async deleteAlias(aliasName: string): Promise<void> {
    this.sql('DELETE FROM aliases WHERE alias_name = ?').run(aliasName);
  }

  async countAliases(keyId: string): Promise<number> {
    return (this.sql('SELECT count(*) AS n FROM aliases WHERE target_key_id = ?').get(keyId) as { n: number }).n;
  }

  async listAliases(afterPosition: number, limit: number, keyId?: string): Promise<Array<Alias & { position: number }>> {
    const rows = this
      .sql(`SELECT rowid AS position, * FROM aliases WHERE rowid > ? ${keyId ? 'AND target_key_id = ?' : ''} ORDER BY rowid LIMIT ?`)
      .all(...(keyId ? [afterPosition, keyId, limit] : [afterPosition, limit])) as AliasRow[];
    return rows.map(rowToAlias);
  }

  async setDescription(keyId: string, description: string): Promise<void> {
    this.sql('UPDATE keys SET description = ? WHERE key_id = ?').run(description, keyId);
  }

  async setPolicy(keyId: string, policy: string): Promise<void> {
    this.sql('UPDATE keys SET policy = ? WHERE key_id = ?').run(policy, keyId);
  }

  async changeTags(keyId: string, put: Tag[], remove: string[]): Promise<void> {
    this.db.transaction(() => {
      const upsert = this.sql('INSERT INTO tags (key_id, tag_key, tag_value) VALUES (?, ?, ?) ON CONFLICT (key_id, tag_key) DO UPDATE SET tag_value = excluded.tag_value');
      for (const t of put) upsert.run(keyId, t.key, t.value);
      const del = this.sql('DELETE FROM tags WHERE key_id = ? AND tag_key = ?');
      for (const k of remove) del.run(keyId, k);
    })();
  }

  async setRotation(keyId: string, rotation: { periodDays: number; nextRotationDate: Date } | null): Promise<boolean> {
    const result = this
      .sql(`UPDATE keys SET rotation_period_days = ?, next_rotation_date = ? WHERE key_id = ? AND state = 'Enabled' AND deletion_started IS NULL`)
      .run(rotation?.periodDays ?? null, rotation ? toSeconds(rotation.nextRotationDate) : null, keyId);
    return result.changes === 1;
  }

  async listMaterialsOf(keyId: string): Promise<KeyMaterial[]> {
    return (this.sql('SELECT * FROM key_materials WHERE key_id = ? ORDER BY version').all(keyId) as MaterialRow[]).map(rowToMaterial);
  }

  async keysDueForDeletion(now: Date): Promise<string[]> {
    const rows = this
      .sql("SELECT key_id FROM keys WHERE deletion_started IS NOT NULL OR (state = 'PendingDeletion' AND deletion_date <= ?) ORDER BY position")
      .all(toSeconds(now)) as Array<{ key_id: string }>;
    return rows.map((r) => r.key_id);
  }

  async keysDueForRotation(now: Date): Promise<string[]> {
    const rows = this
      .sql("SELECT key_id FROM keys WHERE state = 'Enabled' AND deletion_started IS NULL AND origin <> 'EXTERNAL' AND next_rotation_date <= ? ORDER BY position")
      .all(toSeconds(now)) as Array<{ key_id: string }>;
    return rows.map((r) => r.key_id);
  }

  async deleteKey(keyId: string): Promise<void> {
    this.db.transaction(() => {
      const deleted = this.sql('DELETE FROM keys WHERE key_id = ? AND deletion_started IS NOT NULL').run(keyId); // cascades to materials, tags, aliases, grants, import parameters
      if (deleted.changes !== 1) throw new Error(`refusing to delete ${keyId}: its deletion was not begun (beginDeletion)`);
      this.sql('DELETE FROM material_intents WHERE key_id = ?').run(keyId);
    })();
  }

  async grantTokenHashes(grantId: string): Promise<Buffer[]> {
    return (this.sql('SELECT token_hash FROM grant_tokens WHERE grant_id = ?').all(grantId) as Array<{ token_hash: Buffer }>).map((r) => r.token_hash);
  }

  async insertGrant(g: Grant, tokenHash: Buffer, maxPerKey: number, sameAs?: (existing: Grant) => boolean): Promise<string | 'quota'> {
    return this.db.transaction((): string | 'quota' => {
      if (g.name !== undefined && sameAs) {
        const named = this.sql('SELECT * FROM grants WHERE key_id = ? AND name = ? ORDER BY rowid').all(g.keyId, g.name) as GrantRow[];
        const twin = named.map(rowToGrant).find(sameAs);
        if (twin) {
          this.sql('INSERT OR IGNORE INTO grant_tokens (grant_id, token_hash) VALUES (?, ?)').run(twin.grantId, tokenHash);
          return twin.grantId;
        }
      }
      if ((this.sql('SELECT count(*) AS n FROM grants WHERE key_id = ?').get(g.keyId) as { n: number }).n >= maxPerKey) return 'quota';
      this
        .sql(`INSERT INTO grants (grant_id, key_id, name, grantee_principal, retiring_principal, issuing_account, operations, constraints, created_at)
                  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(g.grantId, g.keyId, g.name ?? null, g.granteePrincipal, g.retiringPrincipal ?? null, g.issuingAccount, JSON.stringify(g.operations),
          g.constraints ? JSON.stringify(g.constraints) : null, toSeconds(g.createdAt));
      this.sql('INSERT INTO grant_tokens (grant_id, token_hash) VALUES (?, ?)').run(g.grantId, tokenHash);
      return g.grantId;
    }).immediate();
  }

  async addGrantToken(grantId: string, tokenHash: Buffer): Promise<void> {
    this.sql('INSERT OR IGNORE INTO grant_tokens (grant_id, token_hash) VALUES (?, ?)').run(grantId, tokenHash);
  }

  async getGrant(grantId: string): Promise<Grant | undefined> {
    const row = this.sql('SELECT * FROM grants WHERE grant_id = ?').get(grantId) as GrantRow | undefined;
    return row && rowToGrant(row);
  }

  async listGrants(filter: { keyId?: string; grantId?: string; granteePrincipal?: string; retiringPrincipal?: string }, afterPosition: number, limit: number): Promise<Array<Grant & { position: number }>> {
    const where = ['position > ?'];
    const args: unknown[] = [afterPosition];
    for (const [column, value] of [['key_id', filter.keyId], ['grant_id', filter.grantId], ['grantee_principal', filter.granteePrincipal], ['retiring_principal', filter.retiringPrincipal]] as const) {
      if (value !== undefined) {
        where.push(`${column} = ?`);
        args.push(value);
      }
    }
    const rows = this.sql(`SELECT * FROM grants WHERE ${where.join(' AND ')} ORDER BY position LIMIT ?`).all(...args, limit) as GrantRow[];
    return rows.map((r) => ({ ...rowToGrant(r), position: r.position }));
  }

  async countGrants(keyId: string): Promise<number> {
    return (this.sql('SELECT count(*) AS n FROM grants WHERE key_id = ?').get(keyId) as { n: number }).n;
  }

  async deleteGrant(grantId: string): Promise<void> {
    this.sql('DELETE FROM grants WHERE grant_id = ?').run(grantId);
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

  async recordKeyUsage(entries: readonly KeyLastUsage[]): Promise<void> {
    const upsert = this.sql(`INSERT INTO key_last_usage (key_id, operation, used_at, request_id)
       SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM keys WHERE key_id = ?)
       ON CONFLICT (key_id) DO UPDATE SET operation = excluded.operation, used_at = excluded.used_at, request_id = excluded.request_id
       WHERE excluded.used_at > key_last_usage.used_at`);
    this.db.transaction(() => {
      for (const u of entries) upsert.run(u.keyId, u.operation, toSeconds(u.at), u.requestId, u.keyId);
    })();
  }

  async getKeyUsage(keyId: string): Promise<{ usage?: KeyLastUsage; trackingStartedAt: Date }> {
    const row = this.sql('SELECT operation, used_at, request_id FROM key_last_usage WHERE key_id = ?').get(keyId) as { operation: string; used_at: number; request_id: string } | undefined;
    const { started_at } = this.sql('SELECT started_at FROM usage_tracking WHERE id = 1').get() as { started_at: number };
    return {
      ...(row && { usage: { keyId, operation: row.operation, at: new Date(row.used_at * 1000), requestId: row.request_id } }),
      trackingStartedAt: new Date(started_at * 1000),
    };
  }

  async setAuditAnchor(a: AuditAnchor): Promise<void> {
    this.sql('INSERT INTO audit_anchor (id, segment, end_offset, seq, head, mac) VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET segment = excluded.segment, end_offset = excluded.end_offset, seq = excluded.seq, head = excluded.head, mac = excluded.mac')
      .run(a.segment, a.endOffset, a.seq, a.head, a.mac);
  }

  async close(): Promise<void> {
    this.db.close();
  }

  private migrate(): void {
    const applied = this.db.pragma('user_version', { simple: true }) as number;
    for (let i = applied; i < MIGRATIONS.length; i++) {
      const migration = MIGRATIONS[i];
      this.db.transaction(() => {
        if (typeof migration === 'string') this.db.exec(migration);
        else migration(this.db);
        this.db.pragma(`user_version = ${i + 1}`);
      })();
    }
  }
}

/** Thrown inside reserveVersion's transaction to roll it back. */
const QUOTA: ReserveRefusal = 'quota';

interface MaterialRow {
  key_id: string;
  version: number;
  material_id: string;
  created_at: number;
  rotation_type: 'AUTOMATIC' | 'ON_DEMAND' | null;
  object_ids: string;
  import_state: ImportedMaterial['importState'] | null;
  expiration_model: ExpirationModel | null;
  valid_to: number | null;
  material_description: string | null;
}

function rowToMaterial(r: MaterialRow): KeyMaterial {
  return {
    keyId: r.key_id, version: r.version, materialId: r.material_id, createdAt: toDate(r.created_at),
    ...(r.rotation_type && { rotationType: r.rotation_type }),
    objects: materialObjects(r.key_id, r.version, JSON.parse(r.object_ids) as Record<string, string>),
    ...(r.import_state && {
      imported: {
        importState: r.import_state, expirationModel: r.expiration_model as ExpirationModel, // written with import_state, always
        ...(r.valid_to !== null && { validTo: toDate(r.valid_to) }),
        ...(r.material_description !== null && { description: r.material_description }),
      },
    }),
  };
}

interface IntentRow {
  intent_id: number;
  key_id: string;
  version: number;
  purpose: MaterialIntent['purpose'];
  rotation_type: 'AUTOMATIC' | 'ON_DEMAND' | null;
  object_ids: string;
  created_at: number;
  owner: string | null;
}

function rowToIntent(r: IntentRow): MaterialIntent {
  return {
    intentId: r.intent_id, keyId: r.key_id, version: r.version, purpose: r.purpose, createdAt: toDate(r.created_at),
    ...(r.rotation_type && { rotationType: r.rotation_type }),
    ...(r.owner !== null && { owner: r.owner }),
    objects: materialObjects(r.key_id, r.version, JSON.parse(r.object_ids) as Record<string, string>),
  };
}

interface GrantRow {
  position: number;
  grant_id: string;
  key_id: string;
  name: string | null;
  grantee_principal: string;
  retiring_principal: string | null;
  issuing_account: string;
  operations: string;
  constraints: string | null;
  created_at: number;
}

function rowToGrant(r: GrantRow): Grant {
  return {
    grantId: r.grant_id, keyId: r.key_id, granteePrincipal: r.grantee_principal, issuingAccount: r.issuing_account,
    operations: JSON.parse(r.operations) as string[], createdAt: toDate(r.created_at),
    ...(r.name !== null && { name: r.name }),
    ...(r.retiring_principal !== null && { retiringPrincipal: r.retiring_principal }),
    ...(r.constraints !== null && { constraints: JSON.parse(r.constraints) as GrantConstraints }),
  };
}

interface AliasRow {
  alias_name: string;
  target_key_id: string;
  created_at: number;
  last_updated_at: number;
  position: number;
}

function rowToAlias(r: AliasRow): Alias & { position: number } {
  return { aliasName: r.alias_name, targetKeyId: r.target_key_id, createdAt: toDate(r.created_at), lastUpdatedAt: toDate(r.last_updated_at), position: r.position };
}

function rowToKey(r: KeyRow): KeyRecord {
  return {
    keyId: r.key_id,
    createdAt: toDate(r.created_at),
    description: r.description,
    keyUsage: r.key_usage as KeyRecord['keyUsage'],
    keySpec: r.key_spec as KeyRecord['keySpec'],
    origin: r.origin as KeyOrigin,
    state: r.state as KeyRecord['state'],
    deletionDate: r.deletion_date === null ? undefined : toDate(r.deletion_date),
    pendingWindowDays: r.pending_window_days ?? undefined,
    ...(r.deletion_started !== null && { deletionStartedAt: toDate(r.deletion_started) }),
    currentMaterialVersion: r.current_material_version,
    policy: r.policy ?? undefined,
    rotation:
      r.rotation_period_days === null || r.next_rotation_date === null
        ? undefined
        : { periodDays: r.rotation_period_days, nextRotationDate: toDate(r.next_rotation_date) },
  };
}
