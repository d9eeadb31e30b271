import Database from 'better-sqlite3';
import type { KeyMaterial, KeyRecord, KeyRepository, StateChange, Tag } from '../domain/key-repository';

/**
 * Schema migrations, applied in order; PRAGMA user_version records how many ran. Append only.
 * Tables for aliases and grants exist from the start so lookups are real; their write operations
 * arrive with the issues that introduce them.
 */
const MIGRATIONS = [
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
];

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
  current_material_version: number;
  policy: string | null;
}

const toDate = (seconds: number) => new Date(seconds * 1000);
const toSeconds = (d: Date) => d.getTime() / 1000;

export class SqliteKeyRepository implements KeyRepository {
  private readonly db: Database.Database;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL'); // readers never block the writer; several processes may share the file
    this.db.pragma('synchronous = FULL'); // a key's metadata must survive a power cut once CreateKey answered
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
  }

  async insertKey(key: KeyRecord, material: KeyMaterial, tags: Tag[]): Promise<void> {
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO keys (key_id, created_at, description, key_usage, key_spec, origin, state, deletion_date, pending_window_days, current_material_version, policy)
           VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?)`,
        )
        .run(key.keyId, toSeconds(key.createdAt), key.description, key.keyUsage, key.keySpec, key.origin, key.state, key.currentMaterialVersion, key.policy ?? null);
      this.db
        .prepare('INSERT INTO key_materials (key_id, version, material_id, created_at) VALUES (?, ?, ?, ?)')
        .run(material.keyId, material.version, material.materialId, toSeconds(material.createdAt));
      const tag = this.db.prepare('INSERT INTO tags (key_id, tag_key, tag_value) VALUES (?, ?, ?)');
      for (const t of tags) tag.run(key.keyId, t.key, t.value);
    })();
  }

  async getKey(keyId: string): Promise<KeyRecord | undefined> {
    const row = this.db.prepare('SELECT * FROM keys WHERE key_id = ?').get(keyId) as KeyRow | undefined;
    return row && rowToKey(row);
  }

  async getMaterial(keyId: string, version: number): Promise<KeyMaterial | undefined> {
    const row = this.db.prepare('SELECT * FROM key_materials WHERE key_id = ? AND version = ?').get(keyId, version) as MaterialRow | undefined;
    return row && rowToMaterial(row);
  }

  async listMaterials(): Promise<KeyMaterial[]> {
    return (this.db.prepare('SELECT * FROM key_materials ORDER BY key_id, version').all() as MaterialRow[]).map(rowToMaterial);
  }

  async setState(keyId: string, change: StateChange): Promise<void> {
    this.db
      .prepare('UPDATE keys SET state = ?, deletion_date = ?, pending_window_days = ? WHERE key_id = ?')
      .run(change.state, change.deletionDate && toSeconds(change.deletionDate), change.pendingWindowDays, keyId);
  }

  async listKeys(afterPosition: number, limit: number): Promise<Array<{ keyId: string; position: number }>> {
    const rows = this.db.prepare('SELECT key_id, position FROM keys WHERE position > ? ORDER BY position LIMIT ?').all(afterPosition, limit) as Array<{
      key_id: string;
      position: number;
    }>;
    return rows.map((r) => ({ keyId: r.key_id, position: r.position }));
  }

  async listTags(keyId: string): Promise<Tag[]> {
    const rows = this.db.prepare('SELECT tag_key, tag_value FROM tags WHERE key_id = ? ORDER BY tag_key').all(keyId) as Array<{ tag_key: string; tag_value: string }>;
    return rows.map((r) => ({ key: r.tag_key, value: r.tag_value }));
  }

  async aliasTarget(aliasName: string): Promise<string | undefined> {
    const row = this.db.prepare('SELECT target_key_id FROM aliases WHERE alias_name = ?').get(aliasName) as { target_key_id: string } | undefined;
    return row?.target_key_id;
  }

  async grantTokenHash(grantId: string): Promise<Buffer | undefined> {
    const row = this.db.prepare('SELECT token_hash FROM grants WHERE grant_id = ?').get(grantId) as { token_hash: Buffer } | undefined;
    return row?.token_hash;
  }

  async close(): Promise<void> {
    this.db.close();
  }

  private migrate(): void {
    const applied = this.db.pragma('user_version', { simple: true }) as number;
    for (let i = applied; i < MIGRATIONS.length; i++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[i]);
        this.db.pragma(`user_version = ${i + 1}`);
      })();
    }
  }
}

interface MaterialRow {
  key_id: string;
  version: number;
  material_id: string;
  created_at: number;
}

function rowToMaterial(r: MaterialRow): KeyMaterial {
  return { keyId: r.key_id, version: r.version, materialId: r.material_id, createdAt: toDate(r.created_at) };
}

function rowToKey(r: KeyRow): KeyRecord {
  return {
    keyId: r.key_id,
    createdAt: toDate(r.created_at),
    description: r.description,
    keyUsage: r.key_usage as KeyRecord['keyUsage'],
    keySpec: r.key_spec as KeyRecord['keySpec'],
    origin: 'AWS_KMS',
    state: r.state as KeyRecord['state'],
    deletionDate: r.deletion_date === null ? undefined : toDate(r.deletion_date),
    pendingWindowDays: r.pending_window_days ?? undefined,
    currentMaterialVersion: r.current_material_version,
    policy: r.policy ?? undefined,
  };
}
