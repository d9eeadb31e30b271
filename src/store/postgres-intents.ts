import type { PoolClient } from 'pg';
import type { MaterialIntent } from '../domain/key-repository';
import { materialObjects } from '../domain/key-repository';
import type { IntentInsert } from './intent-insert';
import type { PgIntentAccess } from './postgres-imported-material';
import { rowToIntent, type IntentRow } from './postgres-rows';
import type { PgSession, Queryable } from './postgres-session';

/**
 * The material intents of the PostgreSQL store (write-ahead records of token objects about to be
 * made or destroyed): shared by every region's view, as the material is; each recorded with this
 * process's owner id.
 */
export class PostgresIntents implements PgIntentAccess {
  constructor(
    private readonly db: PgSession,
    private readonly ownerId: string,
  ) {}

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

  async insertIntent(on: Queryable, i: IntentInsert): Promise<MaterialIntent> {
    const intent = await this.insertIntentIfFree(on, i);
    if (!intent) throw new Error(`an intent for version ${i.version} of ${i.keyId} exists already`);
    return intent;
  }

  /** Undefined when an intent of that version exists (UNIQUE (key_id, version); one not yet committed is waited for). */
  async insertIntentIfFree(on: Queryable, i: IntentInsert): Promise<MaterialIntent | undefined> {
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
  async dropIntent(c: PoolClient, intent: MaterialIntent): Promise<void> {
    if ((await this.db.changes('DELETE FROM material_intents WHERE intent_id = $1 AND abandoned_at IS NULL', [intent.intentId], c)) !== 1) {
      throw new Error(`the intent for version ${intent.version} of ${intent.keyId} is gone or being rolled back: not activating it`);
    }
  }
}
