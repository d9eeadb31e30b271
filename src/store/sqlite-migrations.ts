import type Database from 'better-sqlite3';
import { legacyObjectIds } from '../domain/key-repository';
import type { KeySpec } from '../domain/key-spec';

/** A schema step: SQL, or a function given the connection and the store's home region. */
export type Migration = string | ((db: Database.Database, home: string) => void);

/**
 * Schema migrations, applied in order, each in one transaction; PRAGMA user_version records how
 * many ran. Append only. A migration is SQL, or a function for data SQL cannot compute (given the
 * store's home region: rows of releases before regions are its).
 * Tables for aliases and grants exist from the start so lookups are real; their write operations
 * arrive with the issues that introduce them. Exported for the upgrade tests: its first n entries
 * are exactly the schema a release with n migrations wrote.
 */
export const MIGRATIONS: Migration[] = [
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
  // Regions (QKMS_REGIONS): a key id has one record per region; tags, aliases (a name unique per
  // region), grants and last usage hang on a record; materials, intents and import parameters are
  // the key id's, shared by its records, so they lose their foreign key (keys.key_id is no longer
  // unique) and deleteKey removes them. Rows of earlier releases are the home region's.
  (db, home) => rebuildForRegions(db, home),
];

/**
 * Applies the migrations `db` lacks. Foreign keys are off around them (PRAGMA foreign_keys is a
 * no-op inside a transaction, and DROP TABLE of a parent with them on deletes its children's rows:
 * the regions migration rebuilds keys), and each migration commits only if foreign_key_check finds
 * no row without its parent.
 */
export function migrate(db: Database.Database, home: string): void {
  const applied = db.pragma('user_version', { simple: true }) as number;
  if (applied >= MIGRATIONS.length) return;
  db.pragma('foreign_keys = OFF');
  try {
    for (let i = applied; i < MIGRATIONS.length; i++) {
      const migration = MIGRATIONS[i];
      db.transaction(() => {
        if (typeof migration === 'string') db.exec(migration);
        else migration(db, home);
        const orphans = db.pragma('foreign_key_check') as Array<{ table: string; parent: string }>;
        if (orphans.length > 0) throw new Error(`schema migration ${i + 1} left ${orphans.length} rows without their parent (first: ${orphans[0].table} -> ${orphans[0].parent}): not applied`);
        db.pragma(`user_version = ${i + 1}`);
      })();
    }
  } finally {
    db.pragma('foreign_keys = ON');
  }
}

/**
 * Rows a release before schema 5 wrote, adopted: their objects keep their ids (the label's bytes),
 * and no version they made is reserved again. Run by migration 5 and again at every writable open:
 * the release of schema 4 does not refuse a newer schema, so after a rollback to it (and a new
 * upgrade) its keys and rotations are in the store without object ids or reserved versions. Since
 * materials no longer cascade from keys (regions), the materials of keys it deleted go here too.
 */
export function adoptRowsOfEarlierReleases(db: Database.Database): void {
  db.exec(`UPDATE keys SET last_version = max(current_material_version, coalesce((SELECT max(version) FROM key_materials m WHERE m.key_id = keys.key_id), 0))
           WHERE last_version < max(current_material_version, coalesce((SELECT max(version) FROM key_materials m WHERE m.key_id = keys.key_id), 0))`);
  const rows = db.prepare('SELECT DISTINCT m.key_id, m.version, k.key_spec FROM key_materials m JOIN keys k USING (key_id) WHERE m.object_ids IS NULL').all() as Array<{ key_id: string; version: number; key_spec: KeySpec }>;
  const set = db.prepare('UPDATE key_materials SET object_ids = ? WHERE key_id = ? AND version = ?');
  for (const r of rows) set.run(JSON.stringify(legacyObjectIds(r.key_id, r.version, r.key_spec)), r.key_id, r.version);
  db.exec('DELETE FROM key_materials WHERE NOT EXISTS (SELECT 1 FROM keys k WHERE k.key_id = key_materials.key_id)');
}

/**
 * SQLite cannot alter a table's constraints: each table is rebuilt (create, copy, drop, rename),
 * its rows the home region's. `region` defaults to the home region so that the release of schema
 * 4, which does not refuse this schema, still writes keys, tags and aliases that belong somewhere.
 */
function rebuildForRegions(db: Database.Database, home: string): void {
  const region = `region TEXT NOT NULL DEFAULT ${sqlText(home)}`;
  const keyColumns = `key_id, created_at, description, key_usage, key_spec, origin, state, deletion_date, pending_window_days, current_material_version, policy,
                      rotation_period_days, next_rotation_date, last_version, deletion_started`;
  rebuild(db, home, 'keys', `
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    description TEXT NOT NULL,
    key_usage TEXT NOT NULL,
    key_spec TEXT NOT NULL,
    origin TEXT NOT NULL,
    state TEXT NOT NULL,
    deletion_date REAL,
    pending_window_days INTEGER,
    current_material_version INTEGER NOT NULL,
    policy TEXT,
    rotation_period_days INTEGER,
    next_rotation_date REAL,
    last_version INTEGER NOT NULL DEFAULT 0,
    deletion_started REAL,
    ${region},
    primary_region TEXT,
    UNIQUE (key_id, region)`, `position, ${keyColumns}`);
  rebuild(db, home, 'tags', `
    key_id TEXT NOT NULL,
    tag_key TEXT NOT NULL,
    tag_value TEXT NOT NULL,
    ${region},
    PRIMARY KEY (key_id, region, tag_key),
    FOREIGN KEY (key_id, region) REFERENCES keys (key_id, region) ON DELETE CASCADE`, 'key_id, tag_key, tag_value');
  // position: the rowid listAliases paged by, kept; as a column it survives VACUUM.
  rebuild(db, home, 'aliases', `
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    alias_name TEXT NOT NULL,
    target_key_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_updated_at REAL NOT NULL,
    ${region},
    UNIQUE (region, alias_name),
    FOREIGN KEY (target_key_id, region) REFERENCES keys (key_id, region) ON DELETE CASCADE`, 'alias_name, target_key_id, created_at, last_updated_at', 'rowid');
  rebuild(db, home, 'grants', `
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    grant_id TEXT NOT NULL UNIQUE,
    key_id TEXT NOT NULL,
    name TEXT,
    grantee_principal TEXT NOT NULL,
    retiring_principal TEXT,
    issuing_account TEXT NOT NULL,
    operations TEXT NOT NULL,
    constraints TEXT,
    created_at REAL NOT NULL,
    ${region},
    FOREIGN KEY (key_id, region) REFERENCES keys (key_id, region) ON DELETE CASCADE`,
  'position, grant_id, key_id, name, grantee_principal, retiring_principal, issuing_account, operations, constraints, created_at');
  rebuild(db, home, 'key_last_usage', `
    key_id TEXT NOT NULL,
    operation TEXT NOT NULL,
    used_at REAL NOT NULL,
    request_id TEXT NOT NULL,
    ${region},
    PRIMARY KEY (key_id, region),
    FOREIGN KEY (key_id, region) REFERENCES keys (key_id, region) ON DELETE CASCADE`, 'key_id, operation, used_at, request_id');
  rebuild(db, undefined, 'key_materials', `
    key_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    material_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    rotation_type TEXT,
    object_ids TEXT,
    import_state TEXT CHECK (import_state IN ('IMPORTED', 'PENDING_IMPORT')),
    expiration_model TEXT,
    valid_to REAL,
    material_description TEXT,
    PRIMARY KEY (key_id, version)`, 'key_id, version, material_id, created_at, rotation_type, object_ids, import_state, expiration_model, valid_to, material_description');
  rebuild(db, undefined, 'import_parameters', `
    parameters_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    wrapping_key_spec TEXT NOT NULL,
    wrapping_algorithm TEXT NOT NULL,
    token_hash BLOB NOT NULL,
    objects TEXT NOT NULL,
    created_at REAL NOT NULL,
    valid_to REAL NOT NULL`, 'parameters_id, key_id, wrapping_key_spec, wrapping_algorithm, token_hash, objects, created_at, valid_to', 'rowid');
  db.exec(`CREATE INDEX keys_by_region ON keys (region, position);
           CREATE INDEX aliases_by_target ON aliases (target_key_id, region);
           CREATE INDEX grants_by_key ON grants (key_id, region, grantee_principal);
           CREATE INDEX grants_by_retiring ON grants (retiring_principal);
           CREATE INDEX key_materials_expiring ON key_materials (valid_to) WHERE import_state = 'IMPORTED';
           CREATE INDEX import_parameters_by_key ON import_parameters (key_id);`);
}

/**
 * One table rebuilt with `definition`, its rows copied (`columns`, then `region` = `home` when
 * given; `rowidAs`: the old rowid into the new table's first column, position or rowid). Its
 * AUTOINCREMENT counter is carried over: dropping the table drops its sqlite_sequence row, and a
 * position or id is never reused.
 */
function rebuild(db: Database.Database, home: string | undefined, table: string, definition: string, columns: string, rowidAs?: 'rowid'): void {
  const counter = db.prepare('SELECT seq FROM sqlite_sequence WHERE name = ?').get(table) as { seq: number } | undefined;
  const rebuilt = `${table}_rebuilt`;
  db.exec(`CREATE TABLE ${rebuilt} (${definition})`);
  const target = [...(rowidAs ? [rowidAs] : []), columns, ...(home === undefined ? [] : ['region'])].join(', ');
  const source = [...(rowidAs ? ['rowid'] : []), columns, ...(home === undefined ? [] : ['?'])].join(', ');
  db.prepare(`INSERT INTO ${rebuilt} (${target}) SELECT ${source} FROM ${table}`).run(...(home === undefined ? [] : [home]));
  db.exec(`DROP TABLE ${table}; ALTER TABLE ${rebuilt} RENAME TO ${table};`);
  if (!/AUTOINCREMENT/.test(definition)) return;
  const seq = Math.max(counter?.seq ?? 0, (db.prepare(`SELECT coalesce(max(rowid), 0) AS n FROM ${table}`).get() as { n: number }).n);
  db.prepare('DELETE FROM sqlite_sequence WHERE name = ?').run(table);
  db.prepare('INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)').run(table, seq);
}

/** A region as an SQL string literal (for a column DEFAULT, which takes no parameter). */
function sqlText(region: string): string {
  if (!/^[a-z0-9-]{1,64}$/.test(region)) throw new Error(`not a region name: ${JSON.stringify(region)}`);
  return `'${region}'`;
}
