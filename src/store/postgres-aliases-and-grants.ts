import type { Alias, AliasInsert, Grant } from '../domain/key-repository';
import { rowToAlias, rowToGrant, type AliasRow, type GrantRow } from './postgres-rows';
import type { PgSession } from './postgres-session';
import type { PoolClient } from 'pg';

/** The aliases and grants of the PostgreSQL store; quotas are checked under the target key's row lock. */
export class PostgresAliasesAndGrants {
  constructor(private readonly db: PgSession) {}

  async aliasTarget(aliasName: string): Promise<string | undefined> {
    const [row] = await this.db.rows<{ target_key_id: string }>('SELECT target_key_id FROM aliases WHERE alias_name = $1', [aliasName]);
    return row?.target_key_id;
  }

  async getAlias(aliasName: string): Promise<Alias | undefined> {
    const [row] = await this.db.rows<AliasRow>('SELECT * FROM aliases WHERE alias_name = $1', [aliasName]);
    return row && rowToAlias(row);
  }

  async insertAlias(a: Alias, maxPerKey: number): Promise<AliasInsert> {
    return this.db.tx(async (c): Promise<AliasInsert> => {
      await this.db.lockKey(c, a.targetKeyId);
      if ((await this.db.rows('SELECT 1 FROM aliases WHERE alias_name = $1', [a.aliasName], c)).length > 0) return 'taken';
      if ((await this.aliasesOf(c, a.targetKeyId, a.aliasName)) >= maxPerKey) return 'quota';
      // The name may be taken meanwhile by an alias of another key (not serialised by this lock): the
      // unique index decides, and the loser waits for the winner's commit and does nothing.
      const inserted = await this.db.changes(
        'INSERT INTO aliases (alias_name, target_key_id, created_at, last_updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (alias_name) DO NOTHING',
        [a.aliasName, a.targetKeyId, a.createdAt, a.lastUpdatedAt], c,
      );
      return inserted === 1 ? 'created' : 'taken';
    });
  }

  async retargetAlias(aliasName: string, targetKeyId: string, at: Date, maxPerKey: number): Promise<boolean> {
    return this.db.tx(async (c) => {
      await this.db.lockKey(c, targetKeyId);
      if ((await this.aliasesOf(c, targetKeyId, aliasName)) >= maxPerKey) return false;
      await c.query('UPDATE aliases SET target_key_id = $1, last_updated_at = $2 WHERE alias_name = $3', [targetKeyId, at, aliasName]);
      return true;
    });
  }

  /** The key's aliases other than `except`. */
  private async aliasesOf(c: PoolClient, keyId: string, except: string): Promise<number> {
    const [{ n }] = await this.db.rows<{ n: number }>('SELECT count(*)::int AS n FROM aliases WHERE target_key_id = $1 AND alias_name <> $2', [keyId, except], c);
    return n;
  }

  async deleteAlias(aliasName: string): Promise<void> {
    await this.db.pool.query('DELETE FROM aliases WHERE alias_name = $1', [aliasName]);
  }

  async countAliases(keyId: string): Promise<number> {
    const [{ n }] = await this.db.rows<{ n: number }>('SELECT count(*)::int AS n FROM aliases WHERE target_key_id = $1', [keyId]);
    return n;
  }

  async listAliases(afterPosition: number, limit: number, keyId?: string): Promise<Array<Alias & { position: number }>> {
    const rows = await this.db.rows<AliasRow>(
      'SELECT * FROM aliases WHERE position > $1 AND ($2::text IS NULL OR target_key_id = $2) ORDER BY position LIMIT $3',
      [afterPosition, keyId ?? null, limit],
    );
    return rows.map(rowToAlias);
  }

  async grantTokenHashes(grantId: string): Promise<Buffer[]> {
    return (await this.db.rows<{ token_hash: Buffer }>('SELECT token_hash FROM grant_tokens WHERE grant_id = $1', [grantId])).map((r) => r.token_hash);
  }

  async insertGrant(g: Grant, tokenHash: Buffer, maxPerKey: number, sameAs?: (existing: Grant) => boolean): Promise<string | 'quota'> {
    return this.db.tx(async (c) => {
      await this.db.lockKey(c, g.keyId);
      if (g.name !== undefined && sameAs) {
        const named = await this.db.rows<GrantRow>('SELECT * FROM grants WHERE key_id = $1 AND name = $2 ORDER BY position', [g.keyId, g.name], c);
        const twin = named.map(rowToGrant).find(sameAs);
        if (twin) {
          await c.query('INSERT INTO grant_tokens (grant_id, token_hash) VALUES ($1, $2) ON CONFLICT DO NOTHING', [twin.grantId, tokenHash]);
          return twin.grantId;
        }
      }
      const [{ n }] = await this.db.rows<{ n: number }>('SELECT count(*)::int AS n FROM grants WHERE key_id = $1', [g.keyId], c);
      if (n >= maxPerKey) return 'quota';
      await c.query(
        `INSERT INTO grants (grant_id, key_id, name, grantee_principal, retiring_principal, issuing_account, operations, constraints, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [g.grantId, g.keyId, g.name ?? null, g.granteePrincipal, g.retiringPrincipal ?? null, g.issuingAccount, JSON.stringify(g.operations), g.constraints ? JSON.stringify(g.constraints) : null, g.createdAt],
      );
      await c.query('INSERT INTO grant_tokens (grant_id, token_hash) VALUES ($1, $2)', [g.grantId, tokenHash]);
      return g.grantId;
    });
  }

  async addGrantToken(grantId: string, tokenHash: Buffer): Promise<void> {
    await this.db.pool.query('INSERT INTO grant_tokens (grant_id, token_hash) VALUES ($1, $2) ON CONFLICT DO NOTHING', [grantId, tokenHash]);
  }

  async getGrant(grantId: string): Promise<Grant | undefined> {
    const [row] = await this.db.rows<GrantRow>('SELECT * FROM grants WHERE grant_id = $1', [grantId]);
    return row && rowToGrant(row);
  }

  async listGrants(filter: { keyId?: string; grantId?: string; granteePrincipal?: string; retiringPrincipal?: string }, afterPosition: number, limit: number): Promise<Array<Grant & { position: number }>> {
    const rows = await this.db.rows<GrantRow>(
      `SELECT * FROM grants WHERE position > $1 AND ($2::text IS NULL OR key_id = $2) AND ($3::text IS NULL OR grant_id = $3)
         AND ($4::text IS NULL OR grantee_principal = $4) AND ($5::text IS NULL OR retiring_principal = $5)
       ORDER BY position LIMIT $6`,
      [afterPosition, filter.keyId ?? null, filter.grantId ?? null, filter.granteePrincipal ?? null, filter.retiringPrincipal ?? null, limit],
    );
    return rows.map((r) => ({ ...rowToGrant(r), position: Number(r.position) }));
  }

  async countGrants(keyId: string): Promise<number> {
    const [{ n }] = await this.db.rows<{ n: number }>('SELECT count(*)::int AS n FROM grants WHERE key_id = $1', [keyId]);
    return n;
  }

  async deleteGrant(grantId: string): Promise<void> {
    await this.db.pool.query('DELETE FROM grants WHERE grant_id = $1', [grantId]);
  }
}
