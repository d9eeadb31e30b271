import type { PoolClient } from 'pg';
import type { ImportActivation, ImportParameters, KeyRepository, MaterialIntent } from '../domain/key-repository';
import { objectIdsOf } from '../domain/key-repository';
import type { IntentInsert } from './intent-insert';
import { rowToImportParameters, type ImportParametersRow } from './postgres-rows';
import type { PgSession, Queryable } from './postgres-session';

/** What the imported-material part needs of the PostgreSQL store's intent records. */
export interface PgIntentAccess {
  /** Undefined when an intent of that version exists (material_intents' UNIQUE (key_id, version)). */
  insertIntentIfFree(on: Queryable, i: IntentInsert): Promise<MaterialIntent | undefined>;
  /** Inside a transaction: the intent must still be there and not being rolled back (throws otherwise). */
  dropIntent(c: PoolClient, intent: MaterialIntent): Promise<void>;
}

type ImportFacts = Parameters<KeyRepository['activateImport']>[1];
type ImportReservation = Awaited<ReturnType<KeyRepository['reserveImport']>>;

/** PostgreSQL's `integer` (versions). */
const MAX_INTEGER = 2 ** 31 - 1;

/**
 * Imported key material (BYOK) in one region's view of the PostgreSQL store: import intents and
 * activations, discards of deleted or expired material, and GetParametersForImport's records. The
 * material is shared by every region's record of the key id; the state checks and changes are the
 * view's record's. Each transaction that reads before it writes first locks every record of the
 * key id, so replicas (of any region) importing into, activating or discarding material of one key
 * take turns: each sees the versions, intents and import states the ones before it committed (two
 * NEW_KEY_MATERIAL imports never both make a version pending rotation, and the last activation of
 * a key's versions always finds none PENDING_IMPORT).
 */
export class PostgresImportedMaterial {
  constructor(
    private readonly db: PgSession,
    private readonly region: string,
    private readonly intents: PgIntentAccess,
  ) {}

  async reserveImport(keyId: string, request: { version: number | 'new'; objectIds: Record<string, string>; createdAt: Date }): Promise<ImportReservation> {
    return this.db.tx(async (c): Promise<ImportReservation> => {
      const records = await this.db.lockRecords(c, keyId);
      const key = records.find((r) => r.region === this.region);
      // A key being destroyed takes no objects, whichever version: its deletion would not see them.
      if (!key || key.deletion_started !== null) return 'state';
      let version: number;
      if (request.version === 'new') {
        const refusal = await this.newVersionRefusal(c, keyId, key.current_material_version);
        if (refusal) return refusal;
        version = Math.max(...records.map((r) => r.last_version)) + 1; // reserved on every record
        await c.query('UPDATE keys SET last_version = $1 WHERE key_id = $2', [version, keyId]);
      } else {
        const exists = request.version <= MAX_INTEGER && (await this.db.rows('SELECT 1 FROM key_materials WHERE key_id = $1 AND version = $2', [keyId, request.version], c)).length === 1;
        if (!exists) return 'state';
        version = request.version;
      }
      return (await this.intents.insertIntentIfFree(c, { keyId, version, purpose: 'import', objectIds: request.objectIds, createdAt: request.createdAt })) ?? 'busy';
    });
  }

  /**
   * NEW_KEY_MATERIAL while a version newer than the current one exists (it waits for rotation), or
   * while another NEW_KEY_MATERIAL import is in flight (it would make one): two such versions never exist.
   */
  private async newVersionRefusal(c: PoolClient, keyId: string, current: number): Promise<{ pending: string } | 'busy' | undefined> {
    if (current > 0) {
      const [pending] = await this.db.rows<{ material_id: string }>('SELECT material_id FROM key_materials WHERE key_id = $1 AND version > $2 ORDER BY version LIMIT 1', [keyId, current], c);
      if (pending) return { pending: pending.material_id };
    }
    const inFlight = await this.db.rows("SELECT 1 FROM material_intents WHERE key_id = $1 AND purpose = 'import' AND version > $2 AND abandoned_at IS NULL", [keyId, current], c);
    return inFlight.length > 0 ? 'busy' : undefined;
  }

  async rotateToImportedMaterial(keyId: string, at: Date, onDemandLimit: number): Promise<number | 'state' | 'none' | 'quota'> {
    return this.db.tx(async (c): Promise<number | 'state' | 'none' | 'quota'> => {
      const key = (await this.db.lockRecords(c, keyId)).find((r) => r.region === this.region);
      if (!key || key.state !== 'Enabled' || key.deletion_started !== null) return 'state';
      const [pending] = await this.db.rows<{ version: number }>(
        "SELECT version FROM key_materials WHERE key_id = $1 AND version > $2 AND import_state = 'IMPORTED' ORDER BY version LIMIT 1", [keyId, key.current_material_version], c,
      );
      if (!pending) return 'none';
      const [{ n }] = await this.db.rows<{ n: string }>("SELECT count(*) AS n FROM key_materials WHERE key_id = $1 AND rotation_type = 'ON_DEMAND'", [keyId], c);
      if (Number(n) >= onDemandLimit) return 'quota';
      await c.query("UPDATE key_materials SET rotation_type = 'ON_DEMAND', created_at = $1 WHERE key_id = $2 AND version = $3", [at, keyId, pending.version]);
      await c.query('UPDATE keys SET current_material_version = $1 WHERE key_id = $2', [pending.version, keyId]);
      return pending.version;
    });
  }

  async activateImport(intent: MaterialIntent, imported: ImportFacts): Promise<ImportActivation> {
    return this.db.tx(async (c): Promise<ImportActivation> => {
      await this.db.lockRecords(c, intent.keyId);
      const [found] = await this.db.rows<{ material_id: string; import_state: 'IMPORTED' | 'PENDING_IMPORT' | null }>(
        'SELECT material_id, import_state FROM key_materials WHERE key_id = $1 AND version = $2', [intent.keyId, intent.version], c,
      );
      const objectIds = JSON.stringify(objectIdsOf(intent.objects));
      let activation: ImportActivation = 'imported';
      if (!found) {
        await this.intents.dropIntent(c, intent);
        await c.query(
          `INSERT INTO key_materials (key_id, version, material_id, created_at, rotation_type, object_ids, import_state, expiration_model, valid_to, material_description)
           VALUES ($1, $2, $3, $4, NULL, $5, 'IMPORTED', $6, $7, $8)`,
          [intent.keyId, intent.version, imported.materialId, intent.createdAt, objectIds, imported.expirationModel, imported.validTo ?? null, imported.description ?? null],
        );
        await c.query('UPDATE keys SET current_material_version = $1 WHERE key_id = $2 AND current_material_version = 0', [intent.version, intent.keyId]);
      } else {
        assertSameMaterial(intent, found, imported.materialId);
        if (found.import_state === 'PENDING_IMPORT') {
          await this.intents.dropIntent(c, intent);
          await c.query("UPDATE key_materials SET object_ids = $1, import_state = 'IMPORTED' WHERE key_id = $2 AND version = $3", [objectIds, intent.keyId, intent.version]);
        } else {
          // Present already: the intent's objects are surplus, left abandoned for the caller to destroy.
          if ((await this.db.changes('UPDATE material_intents SET abandoned_at = now() WHERE intent_id = $1 AND abandoned_at IS NULL', [intent.intentId], c)) !== 1) {
            throw new Error(`the intent for version ${intent.version} of ${intent.keyId} is gone or being rolled back: not activating it`);
          }
          activation = 'expiry-updated';
        }
        await c.query(
          'UPDATE key_materials SET expiration_model = $1, valid_to = $2, material_description = coalesce($3, material_description) WHERE key_id = $4 AND version = $5',
          [imported.expirationModel, imported.validTo ?? null, imported.description ?? null, intent.keyId, intent.version],
        );
      }
      await c.query(
        `UPDATE keys SET state = 'Enabled' WHERE key_id = $1 AND region = $2 AND state = 'PendingImport'
           AND NOT EXISTS (SELECT 1 FROM key_materials WHERE key_id = $1 AND import_state = 'PENDING_IMPORT')`,
        [intent.keyId, this.region],
      );
      return activation;
    });
  }

  /**
   * Throws, rather than answering undefined, when an intent of the version exists (an import in
   * flight, or the surplus objects of an expiry update not yet destroyed): the material is there to
   * delete, only not now, and the caller tries again later.
   */
  async discardImportedMaterial(keyId: string, version: number, onlyIfExpiredBy?: Date): Promise<MaterialIntent | undefined> {
    if (version > MAX_INTEGER) return undefined;
    return this.db.tx(async (c): Promise<MaterialIntent | undefined> => {
      const key = (await this.db.lockRecords(c, keyId)).find((r) => r.region === this.region);
      // A key being destroyed keeps its material for its deletion, which destroys it anyway.
      if (!key || key.deletion_started !== null) return undefined;
      const [found] = await this.db.rows<{ object_ids: Record<string, string>; valid_to: Date | null }>(
        "SELECT object_ids, valid_to FROM key_materials WHERE key_id = $1 AND version = $2 AND import_state = 'IMPORTED'", [keyId, version], c,
      );
      if (!found) return undefined;
      if (onlyIfExpiredBy && (found.valid_to === null || found.valid_to > onlyIfExpiredBy)) return undefined;
      const now = new Date();
      const intent = await this.intents.insertIntentIfFree(c, { keyId, version, purpose: 'discard', objectIds: found.object_ids, createdAt: now, abandonedAt: now });
      if (!intent) throw new Error(`version ${version} of ${keyId} has an import under way: its material cannot be discarded until that ends`);
      await c.query("UPDATE key_materials SET import_state = 'PENDING_IMPORT', object_ids = '{}' WHERE key_id = $1 AND version = $2", [keyId, version]);
      await c.query("UPDATE keys SET state = 'PendingImport' WHERE key_id = $1 AND region = $2 AND state NOT IN ('PendingDeletion', 'PendingReplicaDeletion')", [keyId, this.region]);
      return intent;
    });
  }

  async materialsDueToExpire(now: Date): Promise<Array<{ keyId: string; version: number }>> {
    const rows = await this.db.rows<{ key_id: string; version: number }>(
      `SELECT m.key_id, m.version FROM key_materials m
       WHERE m.import_state = 'IMPORTED' AND m.valid_to <= $1 AND EXISTS (SELECT 1 FROM keys k WHERE k.key_id = m.key_id AND k.deletion_started IS NULL)
       ORDER BY m.valid_to, m.key_id, m.version`,
      [now],
    );
    return rows.map((r) => ({ keyId: r.key_id, version: r.version }));
  }

  async recordImportParameters(p: ImportParameters): Promise<void> {
    await this.db.pool.query(
      `INSERT INTO import_parameters (parameters_id, key_id, wrapping_key_spec, wrapping_algorithm, token_hash, objects, created_at, valid_to)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [p.parametersId, p.keyId, p.wrappingKeySpec, p.wrappingAlgorithm, p.tokenHash, JSON.stringify(p.objects), p.createdAt, p.validTo],
    );
  }

  async getImportParameters(parametersId: string): Promise<ImportParameters | undefined> {
    const [row] = await this.db.rows<ImportParametersRow>('SELECT * FROM import_parameters WHERE parameters_id = $1', [parametersId]);
    return row && rowToImportParameters(row);
  }

  async listImportParameters(keyId?: string): Promise<ImportParameters[]> {
    const rows = await this.db.rows<ImportParametersRow>('SELECT * FROM import_parameters WHERE ($1::text IS NULL OR key_id = $1) ORDER BY position', [keyId ?? null]);
    return rows.map(rowToImportParameters);
  }

  async deleteImportParameters(parametersId: string): Promise<void> {
    await this.db.pool.query('DELETE FROM import_parameters WHERE parameters_id = $1', [parametersId]);
  }
}

/** The version's material must be the import's: the caller compared them before making any object. */
function assertSameMaterial(intent: MaterialIntent, found: { material_id: string; import_state: string | null }, materialId: string): void {
  if (found.import_state === null) throw new Error(`version ${intent.version} of ${intent.keyId} was generated in the HSM: no material can be imported into it`);
  if (found.material_id !== materialId) throw new Error(`version ${intent.version} of ${intent.keyId} holds other material than the import's: not activating it`);
}
