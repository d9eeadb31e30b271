import type { Alias, AliasInsert, Grant } from '../domain/key-repository';
import { rowToAlias, rowToGrant, type AliasRow, type GrantRow } from './postgres-rows';
import type { PgSession } from './postgres-session';
import type { PoolClient } from 'pg';

/**
 * The aliases and grants of one region's view of the PostgreSQL store: both hang on that region's
 * key records. Quotas are checked under the target record's row lock.
 */
export class PostgresAliasesAndGrants {
  constructor(
    private readonly db: PgSession,
    private readonly region: string,
  ) {}

  async aliasTarget(aliasName: string): Promise<string | undefined> {
    const [row] = await this.db.rows<{ target_key_id: string }>('SELECT target_key_id FROM aliases WHERE region = $1 AND alias_name = $2', [this.region, aliasName]);
    return row?.target_key_id;
  }

  async getAlias(aliasName: string): Promise<Alias | undefined> {
    const [row] = await this.db.rows<AliasRow>('SELECT * FROM aliases WHERE region = $1 AND alias_name = $2', [this.region, aliasName]);
    return row && rowToAlias(row);
  }

  async insertAlias(a: Alias, maxPerKey: number): Promise<AliasInsert> {
    return this.db.tx(async (c): Promise<AliasInsert> => {
      await this.db.lockRecord(c, a.targetKeyId, this.region);
      if ((await this.db.rows('SELECT 1 FROM aliases WHERE region = $1 AND alias_name = $2', [this.region, a.aliasName], c)).length > 0) return 'taken';
      if ((await this.aliasesOf(c, a.targetKeyId, a.aliasName)) >= maxPerKey) return 'quota';
      // The name may be taken meanwhile by an alias of another key (not serialised by this lock): the
      // unique index decides, and the loser waits for the winner's commit and does nothing.
      const inserted = await this.db.changes(
        'INSERT INTO aliases (region, alias_name, target_key_id, created_at, last_updated_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (region, alias_name) DO NOTHING',
        [this.region, a.aliasName, a.targetKeyId, a.createdAt, a.lastUpdatedAt], c,
      );
      return inserted === 1 ? 'created' : 'taken';
    });
  }

  async retargetAlias(aliasName: string, targetKeyId: string, at: Date, maxPerKey: number): Promise<boolean> {
    return this.db.tx(async (c) => {
      await this.db.lockRecord(c, targetKeyId, this.region);
      if ((await this.aliasesOf(c, targetKeyId, aliasName)) >= maxPerKey) return false;
      await c.query('UPDATE aliases SET target_key_id = $1, last_updated_at = $2 WHERE region = $3 AND alias_name = $4', [targetKeyId, at, this.region, aliasName]);
      return true;
    });
  }

  /** The key's aliases other than `except`. */
  private async aliasesOf(c: PoolClient, keyId: string, except: string): Promise<number> {
    const [{ n }] = await this.db.rows<{ n: number }>(
      'SELECT count(*)::int AS n FROM aliases WHERE target_key_id = $1 AND region = $2 AND alias_name <> $3', [keyId, this.region, except], c,
    );
    return n;
  }

  async deleteAlias(aliasName: string): Promise<void> {
    await this.db.pool.query('DELETE FROM aliases WHERE region = $1 AND alias_name = $2', [this.region, aliasName]);
  }

  async countAliases(keyId: string): Promise<number> {
    const [{ n }] = await this.db.rows<{ n: number }>('SELECT count(*)::int AS n FROM aliases WHERE target_key_id = $1 AND region = $2', [keyId, this.region]);
    return n;
  }

  async listAliases(afterPosition: number, limit: number, keyId?: string): Promise<Array<Alias & { position: number }>> {
    const rows = await this.db.rows<AliasRow>(
      'SELECT * FROM aliases WHERE region = $1 AND position > $2 AND ($3::text IS NULL OR target_key_id = $3) ORDER BY position LIMIT $4',
      [this.region, afterPosition, keyId ?? null, limit],
    );
    return rows.map(rowToAlias);
  }

  async grantTokenHashes(grantId: string): Promise<Buffer[]> {
    const rows = await this.db.rows<{ token_hash: Buffer }>(
      'SELECT t.token_hash FROM grant_tokens t JOIN grants g USING (grant_id) WHERE t.grant_id = $1 AND g.region = $2', [grantId, this.region],
    );
    return rows.map((r) => r.token_hash);
  }

  async insertGrant(g: Grant, tokenHash: Buffer, maxPerKey: number, sameAs?: (existing: Grant) => boolean): Promise<string | 'quota'> {
    return this.db.tx(async (c) => {
      await this.db.lockRecord(c, g.keyId, this.region);
      if (g.name !== undefined && sameAs) {
        const named = await this.db.rows<GrantRow>('SELECT * FROM grants WHERE key_id = $1 AND region = $2 AND name = $3 ORDER BY position', [g.keyId, this.region, g.name], c);
        const twin = named.map(rowToGrant).find(sameAs);
        if (twin) {
          await c.query('INSERT INTO grant_tokens (grant_id, token_hash) VALUES ($1, $2) ON CONFLICT DO NOTHING', [twin.grantId, tokenHash]);
          return twin.grantId;
        }
      }
      const [{ n }] = await this.db.rows<{ n: number }>('SELECT count(*)::int AS n FROM grants WHERE key_id = $1 AND region = $2', [g.keyId, this.region], c);
      if (n >= maxPerKey) return 'quota';
      await c.query(
        `INSERT INTO grants (grant_id, key_id, region, name, grantee_principal, retiring_principal, issuing_account, operations, constraints, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [g.grantId, g.keyId, this.region, g.name ?? null, g.granteePrincipal, g.retiringPrincipal ?? null, g.issuingAccount, JSON.stringify(g.operations), g.constraints ? JSON.stringify(g.constraints) : null, g.createdAt],
      );
      await c.query('INSERT INTO grant_tokens (grant_id, token_hash) VALUES ($1, $2)', [g.grantId, tokenHash]);
      return g.grantId;
    });
  }

  /** Grant ids are random and unique across regions: the grant's own region is the one it is added in. */
  async getGrant(grantId: string): Promise<Grant | undefined> {
    const [row] = await this.db.rows<GrantRow>('SELECT * FROM grants WHERE grant_id = $1 AND region = $2', [grantId, this.region]);
    return row && rowToGrant(row);
  }

  async listGrants(filter: { keyId?: string; grantId?: string; granteePrincipal?: string; retiringPrincipal?: string }, afterPosition: number, limit: number): Promise<Array<Grant & { position: number }>> {
    const rows = await this.db.rows<GrantRow>(
      `SELECT * FROM grants WHERE region = $1 AND position > $2 AND ($3::text IS NULL OR key_id = $3) AND ($4::text IS NULL OR grant_id = $4)
         AND ($5::text IS NULL OR grantee_principal = $5) AND ($6::text IS NULL OR retiring_principal = $6)
       ORDER BY position LIMIT $7`,
      [this.region, afterPosition, filter.keyId ?? null, filter.grantId ?? null, filter.granteePrincipal ?? null, filter.retiringPrincipal ?? null, limit],
    );
    return rows.map((r) => ({ ...rowToGrant(r), position: Number(r.position) }));
  }

  async countGrants(keyId: string): Promise<number> {
    const [{ n }] = await this.db.rows<{ n: number }>('SELECT count(*)::int AS n FROM grants WHERE key_id = $1 AND region = $2', [keyId, this.region]);
    return n;
  }

  async deleteGrant(grantId: string): Promise<void> {
    await this.db.pool.query('DELETE FROM grants WHERE grant_id = $1 AND region = $2', [grantId, this.region]);
  }
}
