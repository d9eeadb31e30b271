import type Database from 'better-sqlite3';
import type { ImportActivation, ImportParameters, KeyRepository, MaterialIntent, MaterialObjects } from '../domain/key-repository';
import { objectIdsOf } from '../domain/key-repository';
import type { IntentInsert } from './intent-insert';
import { toDate, toSeconds } from './sqlite-rows';

/** What the parts of one region's view need of the SQLite store: its connection, statement cache, region and intent records. */
export interface SqliteStoreAccess {
  db: Database.Database;
  sql(text: string): Database.Statement;
  /** The view's region: state checks and changes are its record's; versions and materials are every record's. */
  region: string;
  /** Inside a transaction: the key id's next version number, reserved on every record of it (never reused). */
  reserveNextVersion(keyId: string): number;
  insertIntent(i: IntentInsert): MaterialIntent;
  /** Inside a transaction: the intent must still be there and not being rolled back (throws otherwise). */
  dropIntent(intent: MaterialIntent): void;
}

type ImportFacts = Parameters<KeyRepository['activateImport']>[1];
type ImportReservation = Awaited<ReturnType<KeyRepository['reserveImport']>>;


/**
 * Imported key material (BYOK) in one region's view of the SQLite store: import intents and
 * activations, discards of deleted or expired material, and GetParametersForImport's records. The
 * material, versions and parameters are the key id's (shared by its records in every region); the
 * state checked and changed is the view's record's. Every check-then-act is an IMMEDIATE
 * transaction: the write lock, which other processes on the file wait for, is taken before the
 * first read.
 */
export class SqliteImportedMaterial {
  constructor(private readonly store: SqliteStoreAccess) {}

  reserveImport(keyId: string, request: { version: number | 'new'; objectIds: Record<string, string>; createdAt: Date }): ImportReservation {
    const { sql } = this.store;
    return this.store.db.transaction((): ImportReservation => {
      const key = sql('SELECT current_material_version AS current, deletion_started FROM keys WHERE key_id = ? AND region = ?').get(keyId, this.store.region) as { current: number; deletion_started: number | null } | undefined;
      // A key being destroyed takes no objects, whichever version: its deletion would not see them.
      if (!key || key.deletion_started !== null) return 'state';
      let version: number;
      if (request.version === 'new') {
        const refusal = this.newVersionRefusal(keyId, key.current);
        if (refusal) return refusal;
        version = this.store.reserveNextVersion(keyId);
      } else {
        if (!sql('SELECT 1 FROM key_materials WHERE key_id = ? AND version = ?').get(keyId, request.version)) return 'state';
        version = request.version;
      }
      try {
        return this.store.insertIntent({ keyId, version, purpose: 'import', objectIds: request.objectIds, createdAt: request.createdAt });
      } catch (err) {
        if (isIntentOfVersionTaken(err)) return 'busy';
        throw err;
      }
    }).immediate();
  }

  /**
   * NEW_KEY_MATERIAL while a version newer than the current one exists (it waits for rotation), or
   * while another NEW_KEY_MATERIAL import is in flight (it would make one): two such versions never exist.
   */
  private newVersionRefusal(keyId: string, current: number): { pending: string } | 'busy' | undefined {
    const { sql } = this.store;
    if (current > 0) {
      const pending = sql('SELECT material_id FROM key_materials WHERE key_id = ? AND version > ? ORDER BY version LIMIT 1').get(keyId, current) as { material_id: string } | undefined;
      if (pending) return { pending: pending.material_id };
    }
    const inFlight = sql("SELECT 1 FROM material_intents WHERE key_id = ? AND purpose = 'import' AND version > ? AND abandoned_at IS NULL").get(keyId, current);
    return inFlight ? 'busy' : undefined;
  }

  activateImport(intent: MaterialIntent, imported: ImportFacts): ImportActivation {
    const { sql } = this.store;
    return this.store.db.transaction((): ImportActivation => {
      const found = sql('SELECT material_id, import_state FROM key_materials WHERE key_id = ? AND version = ?').get(intent.keyId, intent.version) as
        | { material_id: string; import_state: 'IMPORTED' | 'PENDING_IMPORT' | null }
        | undefined;
      const objectIds = JSON.stringify(objectIdsOf(intent.objects));
      const validTo = imported.validTo ? toSeconds(imported.validTo) : null;
      let activation: ImportActivation = 'imported';
      if (!found) {
        this.store.dropIntent(intent);
        sql(`INSERT INTO key_materials (key_id, version, material_id, created_at, rotation_type, object_ids, import_state, expiration_model, valid_to, material_description)
             VALUES (?, ?, ?, ?, NULL, ?, 'IMPORTED', ?, ?, ?)`)
          .run(intent.keyId, intent.version, imported.materialId, toSeconds(intent.createdAt), objectIds, imported.expirationModel, validTo, imported.description ?? null);
        sql('UPDATE keys SET current_material_version = ? WHERE key_id = ? AND current_material_version = 0').run(intent.version, intent.keyId);
      } else {
        assertSameMaterial(intent, found, imported.materialId);
        if (found.import_state === 'PENDING_IMPORT') {
          this.store.dropIntent(intent);
          sql("UPDATE key_materials SET object_ids = ?, import_state = 'IMPORTED' WHERE key_id = ? AND version = ?").run(objectIds, intent.keyId, intent.version);
        } else {
          // Present already: the intent's objects are surplus, left abandoned for the caller to destroy.
          if (sql('UPDATE material_intents SET abandoned_at = ? WHERE intent_id = ? AND abandoned_at IS NULL').run(Date.now() / 1000, intent.intentId).changes !== 1) {
            throw new Error(`the intent for version ${intent.version} of ${intent.keyId} is gone or being rolled back: not activating it`);
          }
          activation = 'expiry-updated';
        }
        sql('UPDATE key_materials SET expiration_model = ?, valid_to = ?, material_description = coalesce(?, material_description) WHERE key_id = ? AND version = ?')
          .run(imported.expirationModel, validTo, imported.description ?? null, intent.keyId, intent.version);
      }
      sql(`UPDATE keys SET state = 'Enabled' WHERE key_id = ? AND region = ? AND state = 'PendingImport'
             AND NOT EXISTS (SELECT 1 FROM key_materials WHERE key_id = ? AND import_state = 'PENDING_IMPORT')`).run(intent.keyId, this.store.region, intent.keyId);
      return activation;
    }).immediate();
  }

  /**
   * Throws, rather than answering undefined, when an intent of the version exists (an import in
   * flight, or the surplus objects of an expiry update not yet destroyed): the material is there to
   * delete, only not now, and the caller tries again later.
   */
  discardImportedMaterial(keyId: string, version: number, onlyIfExpiredBy?: Date): MaterialIntent | undefined {
    const { sql } = this.store;
    return this.store.db.transaction((): MaterialIntent | undefined => {
      // A key being destroyed keeps its material for its deletion, which destroys it anyway.
      const found = sql(`SELECT m.object_ids, m.valid_to FROM key_materials m JOIN keys k USING (key_id)
                         WHERE m.key_id = ? AND m.version = ? AND m.import_state = 'IMPORTED' AND k.region = ? AND k.deletion_started IS NULL`).get(keyId, version, this.store.region) as
        | { object_ids: string; valid_to: number | null }
        | undefined;
      if (!found) return undefined;
      if (onlyIfExpiredBy && (found.valid_to === null || found.valid_to > toSeconds(onlyIfExpiredBy))) return undefined;
      const now = new Date();
      let intent: MaterialIntent;
      try {
        intent = this.store.insertIntent({ keyId, version, purpose: 'discard', objectIds: JSON.parse(found.object_ids) as Record<string, string>, createdAt: now, abandonedAt: now });
      } catch (err) {
        if (isIntentOfVersionTaken(err)) throw new Error(`version ${version} of ${keyId} has an import under way: its material cannot be discarded until that ends`, { cause: err });
        throw err;
      }
      sql("UPDATE key_materials SET import_state = 'PENDING_IMPORT', object_ids = '{}' WHERE key_id = ? AND version = ?").run(keyId, version);
      sql("UPDATE keys SET state = 'PendingImport' WHERE key_id = ? AND region = ? AND state NOT IN ('PendingDeletion', 'PendingReplicaDeletion')").run(keyId, this.store.region);
      return intent;
    }).immediate();
  }

  rotateToImportedMaterial(keyId: string, at: Date, onDemandLimit: number): number | 'state' | 'none' | 'quota' {
    const { sql } = this.store;
    return this.store.db.transaction((): number | 'state' | 'none' | 'quota' => {
      const key = sql("SELECT current_material_version AS current FROM keys WHERE key_id = ? AND region = ? AND state = 'Enabled' AND deletion_started IS NULL").get(keyId, this.store.region) as { current: number } | undefined;
      if (!key) return 'state';
      const pending = sql("SELECT version FROM key_materials WHERE key_id = ? AND version > ? AND import_state = 'IMPORTED' ORDER BY version LIMIT 1").get(keyId, key.current) as { version: number } | undefined;
      if (!pending) return 'none';
      const { n } = sql("SELECT count(*) AS n FROM key_materials WHERE key_id = ? AND rotation_type = 'ON_DEMAND'").get(keyId) as { n: number };
      if (n >= onDemandLimit) return 'quota';
      sql("UPDATE key_materials SET rotation_type = 'ON_DEMAND', created_at = ? WHERE key_id = ? AND version = ?").run(toSeconds(at), keyId, pending.version);
      sql('UPDATE keys SET current_material_version = ? WHERE key_id = ?').run(pending.version, keyId);
      return pending.version;
    }).immediate();
  }

  materialsDueToExpire(now: Date): Array<{ keyId: string; version: number }> {
    const rows = this.store
      // Material of a key id no longer has to expire once its last record is being destroyed.
      .sql(`SELECT m.key_id, m.version FROM key_materials m
            WHERE m.import_state = 'IMPORTED' AND m.valid_to <= ? AND EXISTS (SELECT 1 FROM keys k WHERE k.key_id = m.key_id AND k.deletion_started IS NULL)
            ORDER BY m.valid_to, m.key_id, m.version`)
      .all(toSeconds(now)) as Array<{ key_id: string; version: number }>;
    return rows.map((r) => ({ keyId: r.key_id, version: r.version }));
  }

  recordImportParameters(p: ImportParameters): void {
    this.store
      .sql(`INSERT INTO import_parameters (parameters_id, key_id, wrapping_key_spec, wrapping_algorithm, token_hash, objects, created_at, valid_to)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
      .run(p.parametersId, p.keyId, p.wrappingKeySpec, p.wrappingAlgorithm, p.tokenHash, JSON.stringify(p.objects), toSeconds(p.createdAt), toSeconds(p.validTo));
  }

  getImportParameters(parametersId: string): ImportParameters | undefined {
    const row = this.store.sql('SELECT * FROM import_parameters WHERE parameters_id = ?').get(parametersId) as ImportParametersRow | undefined;
    return row && rowToImportParameters(row);
  }

  listImportParameters(keyId?: string): ImportParameters[] {
    const rows = (keyId === undefined
      ? this.store.sql('SELECT * FROM import_parameters ORDER BY rowid').all()
      : this.store.sql('SELECT * FROM import_parameters WHERE key_id = ? ORDER BY rowid').all(keyId)) as ImportParametersRow[];
    return rows.map(rowToImportParameters);
  }

  deleteImportParameters(parametersId: string): void {
    this.store.sql('DELETE FROM import_parameters WHERE parameters_id = ?').run(parametersId);
  }
}

/** The version's material must be the import's: the caller compared them before making any object. */
function assertSameMaterial(intent: MaterialIntent, found: { material_id: string; import_state: string | null }, materialId: string): void {
  if (found.import_state === null) throw new Error(`version ${intent.version} of ${intent.keyId} was generated in the HSM: no material can be imported into it`);
  if (found.material_id !== materialId) throw new Error(`version ${intent.version} of ${intent.keyId} holds other material than the import's: not activating it`);
}

/** material_intents' UNIQUE (key_id, version): the only unique constraint an intent's insert can break. */
function isIntentOfVersionTaken(err: unknown): boolean {
  return (err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE';
}

interface ImportParametersRow {
  parameters_id: string;
  key_id: string;
  wrapping_key_spec: ImportParameters['wrappingKeySpec'];
  wrapping_algorithm: ImportParameters['wrappingAlgorithm'];
  token_hash: Buffer;
  objects: string;
  created_at: number;
  valid_to: number;
}

function rowToImportParameters(r: ImportParametersRow): ImportParameters {
  return {
    parametersId: r.parameters_id, keyId: r.key_id, wrappingKeySpec: r.wrapping_key_spec, wrappingAlgorithm: r.wrapping_algorithm, tokenHash: r.token_hash,
    objects: JSON.parse(r.objects) as MaterialObjects, createdAt: toDate(r.created_at), validTo: toDate(r.valid_to),
  };
}
