import type { PgSession } from './postgres-session';
import type { TokenPool } from './token-pool';

/**
 * The rate-limit buckets in the database every replica shares: one row per principal, refilled
 * and drawn from in one statement (the row lock orders the replicas), on the database's clock.
 * `granted` carries what this draw took out of the statement, since RETURNING sees only new values.
 */
export class PostgresTokenPool implements TokenPool {
  readonly isShared = true;

  constructor(private readonly db: PgSession) {}

  async take(principal: string, rate: number, capacity: number, want: number): Promise<number> {
    const [row] = await this.db.rows<{ granted: number }>(
      `INSERT INTO rate_buckets AS b (principal, tokens, granted, at)
         VALUES ($1, $3::float8 - LEAST($4::float8, floor($3::float8)), LEAST($4::float8, floor($3::float8)), now())
       ON CONFLICT (principal) DO UPDATE SET
         granted = LEAST($4::float8, floor(LEAST($3::float8, b.tokens + EXTRACT(EPOCH FROM now() - b.at) * $2::float8))),
         tokens = LEAST($3::float8, b.tokens + EXTRACT(EPOCH FROM now() - b.at) * $2::float8)
                  - LEAST($4::float8, floor(LEAST($3::float8, b.tokens + EXTRACT(EPOCH FROM now() - b.at) * $2::float8))),
         at = now()
       RETURNING granted`,
      [principal, rate, capacity, want],
    );
    return Number(row.granted);
  }
}
