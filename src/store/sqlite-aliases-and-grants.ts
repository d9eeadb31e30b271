import type { Alias, AliasInsert, Grant } from '../domain/key-repository';
import type { SqliteStoreAccess } from './sqlite-imported-material';
import { rowToAlias, rowToGrant, toSeconds, type AliasRow, type GrantRow } from './sqlite-rows';

type GrantFilter = { keyId?: string; grantId?: string; granteePrincipal?: string; retiringPrincipal?: string };

/**
 * Aliases and grants of one region's view of the SQLite store: both hang on a key's record in that
 * region (an alias name is unique per region; a grant of another region's record is unknown here).
 * Check-then-act steps are IMMEDIATE transactions: the write lock, which other processes on the
 * file wait for, is taken before the first read.
 */
export class SqliteAliasesAndGrants {
  constructor(private readonly store: SqliteStoreAccess) {}

  aliasTarget(aliasName: string): string | undefined {
    const row = this.store.sql('SELECT target_key_id FROM aliases WHERE region = ? AND alias_name = ?').get(this.store.region, aliasName) as { target_key_id: string } | undefined;
    return row?.target_key_id;
  }

  getAlias(aliasName: string): Alias | undefined {
    const row = this.store.sql('SELECT * FROM aliases WHERE region = ? AND alias_name = ?').get(this.store.region, aliasName) as AliasRow | undefined;
    return row && rowToAlias(row);
  }

  insertAlias(a: Alias, maxPerKey: number): AliasInsert {
    const { sql, region } = this.store;
    return this.store.db.transaction((): AliasInsert => {
      if (sql('SELECT 1 FROM aliases WHERE region = ? AND alias_name = ?').get(region, a.aliasName)) return 'taken';
      if (this.aliasesOf(a.targetKeyId, a.aliasName) >= maxPerKey) return 'quota';
      sql('INSERT INTO aliases (alias_name, region, target_key_id, created_at, last_updated_at) VALUES (?, ?, ?, ?, ?)')
        .run(a.aliasName, region, a.targetKeyId, toSeconds(a.createdAt), toSeconds(a.lastUpdatedAt));
      return 'created';
    }).immediate();
  }

  retargetAlias(aliasName: string, targetKeyId: string, at: Date, maxPerKey: number): boolean {
    return this.store.db.transaction((): boolean => {
      if (this.aliasesOf(targetKeyId, aliasName) >= maxPerKey) return false;
      this.store.sql('UPDATE aliases SET target_key_id = ?, last_updated_at = ? WHERE region = ? AND alias_name = ?').run(targetKeyId, toSeconds(at), this.store.region, aliasName);
      return true;
    }).immediate();
  }

  /** The key's aliases other than `except`. */
  private aliasesOf(keyId: string, except: string): number {
    return (this.store.sql('SELECT count(*) AS n FROM aliases WHERE target_key_id = ? AND region = ? AND alias_name <> ?').get(keyId, this.store.region, except) as { n: number }).n;
  }

  deleteAlias(aliasName: string): void {
    this.store.sql('DELETE FROM aliases WHERE region = ? AND alias_name = ?').run(this.store.region, aliasName);
  }

  countAliases(keyId: string): number {
    return (this.store.sql('SELECT count(*) AS n FROM aliases WHERE target_key_id = ? AND region = ?').get(keyId, this.store.region) as { n: number }).n;
  }

  listAliases(afterPosition: number, limit: number, keyId?: string): Array<Alias & { position: number }> {
    const rows = this.store
      .sql(`SELECT * FROM aliases WHERE region = ? AND position > ? ${keyId ? 'AND target_key_id = ?' : ''} ORDER BY position LIMIT ?`)
      .all(...(keyId ? [this.store.region, afterPosition, keyId, limit] : [this.store.region, afterPosition, limit])) as AliasRow[];
    return rows.map(rowToAlias);
  }

  grantTokenHashes(grantId: string): Buffer[] {
    const rows = this.store
      .sql('SELECT t.token_hash FROM grant_tokens t JOIN grants g USING (grant_id) WHERE t.grant_id = ? AND g.region = ?')
      .all(grantId, this.store.region) as Array<{ token_hash: Buffer }>;
    return rows.map((r) => r.token_hash);
  }

  insertGrant(g: Grant, tokenHash: Buffer, maxPerKey: number, sameAs?: (existing: Grant) => boolean): string | 'quota' {
    const { sql, region } = this.store;
    return this.store.db.transaction((): string | 'quota' => {
      if (g.name !== undefined && sameAs) {
        const named = sql('SELECT * FROM grants WHERE key_id = ? AND region = ? AND name = ? ORDER BY position').all(g.keyId, region, g.name) as GrantRow[];
        const twin = named.map(rowToGrant).find(sameAs);
        if (twin) {
          sql('INSERT OR IGNORE INTO grant_tokens (grant_id, token_hash) VALUES (?, ?)').run(twin.grantId, tokenHash);
          return twin.grantId;
        }
      }
      if (this.countGrants(g.keyId) >= maxPerKey) return 'quota';
      sql(`INSERT INTO grants (grant_id, key_id, region, name, grantee_principal, retiring_principal, issuing_account, operations, constraints, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(g.grantId, g.keyId, region, g.name ?? null, g.granteePrincipal, g.retiringPrincipal ?? null, g.issuingAccount, JSON.stringify(g.operations),
          g.constraints ? JSON.stringify(g.constraints) : null, toSeconds(g.createdAt));
      sql('INSERT INTO grant_tokens (grant_id, token_hash) VALUES (?, ?)').run(g.grantId, tokenHash);
      return g.grantId;
    }).immediate();
  }

  getGrant(grantId: string): Grant | undefined {
    const row = this.store.sql('SELECT * FROM grants WHERE grant_id = ? AND region = ?').get(grantId, this.store.region) as GrantRow | undefined;
    return row && rowToGrant(row);
  }

  listGrants(filter: GrantFilter, afterPosition: number, limit: number): Array<Grant & { position: number }> {
    const where = ['region = ?', 'position > ?'];
    const args: unknown[] = [this.store.region, afterPosition];
    for (const [column, value] of [['key_id', filter.keyId], ['grant_id', filter.grantId], ['grantee_principal', filter.granteePrincipal], ['retiring_principal', filter.retiringPrincipal]] as const) {
      if (value !== undefined) {
        where.push(`${column} = ?`);
        args.push(value);
      }
    }
    const rows = this.store.sql(`SELECT * FROM grants WHERE ${where.join(' AND ')} ORDER BY position LIMIT ?`).all(...args, limit) as GrantRow[];
    return rows.map((r) => ({ ...rowToGrant(r), position: r.position }));
  }

  countGrants(keyId: string): number {
    return (this.store.sql('SELECT count(*) AS n FROM grants WHERE key_id = ? AND region = ?').get(keyId, this.store.region) as { n: number }).n;
  }

  deleteGrant(grantId: string): void {
    this.store.sql('DELETE FROM grants WHERE grant_id = ? AND region = ?').run(grantId, this.store.region);
  }
}
