import type { PoolClient } from 'pg';
import type { KeyRecord, Tag } from '../domain/key-repository';
import type { KeyState } from '../domain/key-state';
import type { PgSession } from './postgres-session';

/**
 * A key id's records across regions, seen from one region's view of the PostgreSQL store: a new
 * key's record, a replica's, the primary region moved, and a record removed. Whatever writes or
 * decides on several records first locks all of them (PgSession.lockRecords), then decides in a
 * later statement, whose snapshot holds what was committed while it waited for the locks.
 */
export class PostgresRegionRecords {
  constructor(
    private readonly db: PgSession,
    private readonly region: string,
  ) {}

  /** The view's record of a new key, its current (and last reserved) version `version`, and its tags. */
  async insertKey(c: PoolClient, key: KeyRecord, version: number, tags: Tag[]): Promise<void> {
    await c.query(
      `INSERT INTO keys (key_id, region, created_at, description, key_usage, key_spec, origin, state, current_material_version, last_version, policy, rotation_period_days, next_rotation_date, primary_region)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $12, $13)`,
      [key.keyId, this.region, key.createdAt, key.description, key.keyUsage, key.keySpec, key.origin, key.state, version, key.policy ?? null, key.rotation?.periodDays ?? null, key.rotation?.nextRotationDate ?? null, key.primaryRegion ?? null],
    );
    await this.insertTags(c, key.keyId, tags);
  }

  private async insertTags(c: PoolClient, keyId: string, tags: Tag[]): Promise<void> {
    for (const t of tags) await c.query('INSERT INTO tags (key_id, region, tag_key, tag_value) VALUES ($1, $2, $3, $4)', [keyId, this.region, t.key, t.value]);
  }

  async regionsWithKeys(): Promise<string[]> {
    return (await this.db.rows<{ region: string }>('SELECT DISTINCT region COLLATE "C" AS region FROM keys ORDER BY 1')).map((r) => r.region);
  }

  async keyRegions(keyId: string): Promise<Array<{ region: string; state: KeyState }>> {
    return this.db.rows<{ region: string; state: KeyState }>('SELECT region, state FROM keys WHERE key_id = $1 ORDER BY region COLLATE "C"', [keyId]);
  }

  /**
   * The shared facts are copied from a record locked (so current) in the same transaction. A key
   * id whose every record is being destroyed counts as gone: the scheduler that found its record
   * the last (deleteRegionRecord false) destroys the material next, which a replica made now
   * would need.
   */
  async insertReplica(key: KeyRecord, tags: Tag[]): Promise<'created' | 'exists' | 'gone'> {
    return this.db.tx(async (c): Promise<'created' | 'exists' | 'gone'> => {
      const records = await this.db.lockRecords(c, key.keyId);
      if (records.some((r) => r.region === this.region)) return 'exists';
      const [source] = records;
      if (!source || records.every((r) => r.deletion_started !== null)) return 'gone';
      // Another replication into this region may have committed while this one waited for the locks.
      const inserted = await this.db.changes(
        `INSERT INTO keys (key_id, region, created_at, description, policy, state, key_usage, key_spec, origin, current_material_version, last_version, rotation_period_days, next_rotation_date, primary_region)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (key_id, region) DO NOTHING`,
        [
          key.keyId, this.region, key.createdAt, key.description, key.policy ?? null, key.state,
          source.key_usage, source.key_spec, source.origin, source.current_material_version, Math.max(...records.map((r) => r.last_version)),
          source.rotation_period_days, source.next_rotation_date, source.primary_region,
        ],
        c,
      );
      if (inserted === 0) return 'exists';
      await this.insertTags(c, key.keyId, tags);
      return 'created';
    });
  }

  async setPrimaryRegion(keyId: string, from: string, to: string): Promise<boolean> {
    return this.db.tx(async (c) => {
      await this.db.lockRecords(c, keyId);
      const changed = await this.db.changes(
        `UPDATE keys SET primary_region = $3 WHERE key_id = $1
           AND EXISTS (SELECT 1 FROM keys WHERE key_id = $1 AND region = $3)
           AND NOT EXISTS (SELECT 1 FROM keys WHERE key_id = $1 AND primary_region IS DISTINCT FROM $2)`,
        [keyId, from, to], c,
      );
      return changed > 0;
    });
  }

  /**
   * Two regions removing the key's last two records at once take turns on the locks: the second
   * finds the first's record gone, and so finds its own the last (false).
   */
  async deleteRegionRecord(keyId: string): Promise<boolean> {
    return this.db.tx(async (c) => {
      await this.db.lockRecords(c, keyId, 'UPDATE');
      const deleted = await this.db.changes(
        'DELETE FROM keys WHERE key_id = $1 AND region = $2 AND EXISTS (SELECT 1 FROM keys WHERE key_id = $1 AND region <> $2)', [keyId, this.region], c,
      );
      return deleted === 1; // cascades to the record's tags, aliases, grants and last usage
    });
  }

  /** The shared rows go with the last record only: while another region holds one, this throws and removes nothing. */
  async deleteKey(keyId: string): Promise<void> {
    await this.db.tx(async (c) => {
      await this.db.lockRecords(c, keyId, 'UPDATE');
      // Cascades to the record's tags, aliases, grants and last usage.
      if ((await this.db.changes('DELETE FROM keys WHERE key_id = $1 AND region = $2 AND deletion_started IS NOT NULL', [keyId, this.region], c)) !== 1) {
        throw new Error(`refusing to delete ${keyId}: its deletion was not begun (beginDeletion)`);
      }
      const [{ n }] = await this.db.rows<{ n: number }>('SELECT count(*)::int AS n FROM keys WHERE key_id = $1', [keyId], c);
      if (n > 0) throw new Error(`refusing to delete the material of ${keyId}: ${n} other region(s) hold a record of it (deleteRegionRecord removes this one)`);
      await c.query('DELETE FROM key_materials WHERE key_id = $1', [keyId]);
      await c.query('DELETE FROM material_intents WHERE key_id = $1', [keyId]);
      await c.query('DELETE FROM import_parameters WHERE key_id = $1', [keyId]);
    });
  }
}
