import type { AuditAnchor } from '../domain/key-repository';
import type { PgSession } from './postgres-session';

/** The PostgreSQL store's rows that belong to no key and no region: the readiness probe's write and the audit trail's anchor. */
export class PostgresProbeAndAnchor {
  constructor(private readonly db: PgSession) {}

  async probeWrite(timeoutMs: number): Promise<void> {
    // The statement timeout bounds a write waiting for a lock; the timer also bounds waiting for a
    // connection and a server that does not answer at all.
    const ms = Math.max(1, Math.round(timeoutMs));
    let timer: NodeJS.Timeout | undefined;
    const write = this.db.tx(async (c) => {
      await c.query(`SET LOCAL statement_timeout = ${ms}`);
      await c.query('SET LOCAL synchronous_commit = on'); // durable when COMMIT returns, whatever the server's default
      await c.query('INSERT INTO write_probe (id, at) VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET at = excluded.at');
    });
    try {
      await Promise.race([write, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`the PostgreSQL store took no write within ${ms} ms`)), ms)))]);
    } finally {
      clearTimeout(timer);
      write.catch(() => undefined); // settled later, after the timer won
    }
  }

  async getAuditAnchor(): Promise<AuditAnchor | 'adopt' | undefined> {
    const [row] = await this.db.rows<{ segment: number | null; end_offset: string | null; seq: string | null; head: string | null; mac: string | null }>(
      'SELECT segment, end_offset, seq, head, mac FROM audit_anchor WHERE id = 1',
    );
    if (!row) return undefined;
    if (row.segment === null || row.end_offset === null || row.seq === null || row.head === null || row.mac === null) return 'adopt';
    return { segment: row.segment, endOffset: Number(row.end_offset), seq: Number(row.seq), head: row.head, mac: row.mac };
  }

  async setAuditAnchor(a: AuditAnchor): Promise<void> {
    await this.db.tx(async (c) => {
      await c.query('SET LOCAL synchronous_commit = on'); // the audit log releases responses after this
      await c.query(
        `INSERT INTO audit_anchor (id, segment, end_offset, seq, head, mac) VALUES (1, $1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET segment = excluded.segment, end_offset = excluded.end_offset, seq = excluded.seq, head = excluded.head, mac = excluded.mac`,
        [a.segment, a.endOffset, a.seq, a.head, a.mac],
      );
    });
  }
}
