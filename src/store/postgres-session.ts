import type { Pool, PoolClient, QueryResultRow } from 'pg';
import type { KeyRow } from './postgres-rows';

/** A pool or a transaction's connection: what a statement runs on. */
export type Queryable = Pick<PoolClient, 'query'>;

/** Statements and transactions over one pool, shared by the parts of the PostgreSQL store. */
export class PgSession {
  constructor(readonly pool: Pool) {}

  async rows<R extends QueryResultRow>(text: string, values: unknown[] = [], on: Queryable = this.pool): Promise<R[]> {
    return (await on.query<R>(text, values)).rows;
  }

  /** How many rows the statement wrote. */
  async changes(text: string, values: unknown[], on: Queryable = this.pool): Promise<number> {
    return (await on.query(text, values)).rowCount ?? 0;
  }

  /** `fn` in one transaction; a value for which `rollback` says true is returned after a rollback. */
  async tx<T>(fn: (c: PoolClient) => Promise<T>, { rollback }: { rollback?: (value: T) => boolean } = {}): Promise<T> {
    const client = await this.pool.connect();
    let isBroken = false;
    try {
      await client.query('BEGIN');
      const value = await fn(client);
      await client.query(rollback?.(value) ? 'ROLLBACK' : 'COMMIT');
      return value;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => (isBroken = true));
      throw err;
    } finally {
      client.release(isBroken); // a connection that cannot roll back is given to no one else
    }
  }

  /**
   * Locks the key's record in `region` until the transaction ends, so that checks counting its
   * aliases or grants and the write they guard happen as one step among all replicas. NO KEY
   * UPDATE: rows referencing the record (foreign keys take KEY SHARE) may still be written meanwhile.
   */
  async lockRecord(c: PoolClient, keyId: string, region: string): Promise<void> {
    await c.query('SELECT 1 FROM keys WHERE key_id = $1 AND region = $2 FOR NO KEY UPDATE', [keyId, region]);
  }

  /**
   * Locks every region's record of the key id until the transaction ends, in region order (code
   * points, whatever the database's collation), and returns them as they are once locked. Every
   * transaction that writes more than one record of a key id takes this first, always in the same
   * order, so two of them never deadlock; and one that
   * checks the shared facts (versions, materials, intents) before writing them takes turns with
   * the others. A record another transaction deleted while this one waited is not returned; one it
   * inserted is seen only by this transaction's next statements (READ COMMITTED).
   */
  async lockRecords(c: PoolClient, keyId: string, mode: 'NO KEY UPDATE' | 'UPDATE' = 'NO KEY UPDATE'): Promise<KeyRow[]> {
    return this.rows<KeyRow>(`SELECT * FROM keys WHERE key_id = $1 ORDER BY region COLLATE "C" FOR ${mode}`, [keyId], c);
  }
}
