import type { Pool, PoolClient, QueryResultRow } from 'pg';

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
   * Locks the key's row until the transaction ends, so that checks counting its aliases, grants or
   * versions and the write they guard happen as one step among all replicas. NO KEY UPDATE: rows
   * referencing the key (foreign keys take KEY SHARE) may still be written meanwhile.
   */
  async lockKey(c: PoolClient, keyId: string): Promise<void> {
    await c.query('SELECT 1 FROM keys WHERE key_id = $1 FOR NO KEY UPDATE', [keyId]);
  }
}
