import type { Client } from 'pg';
import type { Logger } from '../logging/logger';
import type { AuditMac } from './audit-mac';
import { GENESIS, requestRecord, type RequestFields } from './audit-record';
import { AuditTrailRefused } from './audit-startup';
import type { AuditTrail } from './audit-trail';
import { GroupCommit, type GroupCommitOptions } from './group-commit';
import { verifyChain } from './postgres-audit-chain';
import { anchorMessage, batchMessage, migrateAuditSchema } from './postgres-audit-schema';
import { claimReplicaId, connectAuditDatabase, leaseReplicaId, ReplicaIdInUse } from './postgres-replica';

export interface PostgresAuditOptions extends Omit<GroupCommitOptions, 'logger'> {
  /** QKMS_REPLICA_ID; unset, a free per-host id (postgres-replica.ts). */
  replicaId?: string;
}

interface Parts {
  mac: AuditMac;
  logger: Logger;
}

type ChainEnd = { seq: number; head: string };

/**
 * The audit trail of one replica in a shared PostgreSQL database (tables: postgres-audit-schema.ts):
 * its own hash chain, written by group commit. A batch is the HSM's two HMACs (batch row and
 * anchor), then ONE transaction — the anchor moved forward only if it is still where this replica
 * left it, the batch row, the records — whose COMMIT returns once durable; only then do the
 * callers' promises resolve. A failed batch leaves nothing (the transaction is rolled back with
 * its connection); its requests fail with KMSInternalException unless fail-open.
 */
export class PostgresAuditLog implements AuditTrail {
  private readonly commits: GroupCommit;
  /** Undefined after the connection broke: the next batch reconnects and re-takes the lease. */
  private client?: Client;
  /** A batch whose COMMIT was sent when the connection broke: it may have committed. */
  private inDoubt?: ChainEnd;

  private constructor(
    private readonly url: string,
    readonly replicaId: string,
    private readonly parts: Parts,
    options: PostgresAuditOptions,
    client: Client,
    private at: ChainEnd,
  ) {
    this.commits = new GroupCommit((batch) => this.write(batch), { ...options, logger: parts.logger });
    this.adopt(client);
  }

  /**
   * Creates the tables if needed, claims a replica id, and verifies that replica's chain against
   * its HSM-signed anchor before anything is written: refused (AuditTrailRefused) when it does not.
   */
  static async open(url: string, parts: Parts, options: PostgresAuditOptions): Promise<PostgresAuditLog> {
    let client: Client | undefined;
    const lost = (err: Error) => parts.logger.error('audit database connection lost during start-up', { cause: err.message });
    try {
      client = await connectAuditDatabase(url, lost);
      await migrateAuditSchema(client);
      const replicaId = await claimReplicaId(client, options.replicaId);
      const at = await resumeChain(client, replicaId, parts);
      if (options.isFailOpen) parts.logger.error('QKMS_AUDIT_FAIL_OPEN is on: requests are answered even when their audit record cannot be written, and the trail then misses them');
      return new PostgresAuditLog(url, replicaId, parts, options, client, at);
    } catch (err) {
      await client?.end().catch(() => undefined);
      throw err;
    }
  }

  record(fields: RequestFields): Promise<void> {
    return this.commits.record(fields);
  }

  async close(): Promise<void> {
    await this.commits.close();
    await this.drop();
  }

  private async write(fields: RequestFields[]): Promise<void> {
    const client = await this.connection();
    let prev = this.at.head;
    const records = fields.map((f, i) => {
      const r = requestRecord(this.at.seq + 1 + i, f, prev);
      prev = r.hash;
      return r;
    });
    const batch = { first: this.at.seq + 1, count: records.length, prev: this.at.head, head: prev };
    const end = { seq: this.at.seq + records.length, head: prev };
    const [batchMac, anchorMac] = await Promise.all([this.parts.mac.sign(batchMessage(this.replicaId, batch)), this.parts.mac.sign(anchorMessage(this.replicaId, end))]);
    try {
      await client.query('BEGIN');
      const moved = await client.query(
        'UPDATE audit_chains SET seq = $2, head = $3, mac = $4, updated_at = now() WHERE replica_id = $1 AND seq = $5 AND head = $6',
        [this.replicaId, end.seq, end.head, anchorMac.toString('hex'), this.at.seq, this.at.head],
      );
      if (moved.rowCount !== 1) throw new Error(`the anchor of chain ${this.replicaId} is not where this replica left it (seq ${this.at.seq}): another process wrote the chain`);
      await client.query('INSERT INTO audit_batches (replica_id, first_seq, count, prev, head, mac) VALUES ($1, $2, $3, $4, $5, $6)', [this.replicaId, batch.first, batch.count, batch.prev, batch.head, batchMac.toString('hex')]);
      await client.query(
        `INSERT INTO audit_records (replica_id, seq, time, request_id, operation, principal, access_key_id, source_ip, key_arn, status, error_code, prev, hash)
         SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::integer[], $11::text[], $12::text[], $13::text[])`,
        [this.replicaId, ...columns(records)],
      );
      this.inDoubt = end;
      await client.query('COMMIT');
      this.inDoubt = undefined;
    } catch (err) {
      // Ending the connection rolls back whatever the transaction did; the next batch reconnects.
      await this.drop();
      throw err;
    }
    this.at = end;
  }

  /** The audit connection; after a break, a new one that holds the lease again and finds the chain where this replica left it. */
  private async connection(): Promise<Client> {
    if (this.client) return this.client;
    const client = await connectAuditDatabase(this.url, () => undefined);
    try {
      if (!(await leaseReplicaId(client, this.replicaId))) throw new ReplicaIdInUse(`another process took the audit chain of replica id ${this.replicaId} while this one was disconnected`);
      const { rows } = await client.query<{ seq: string; head: string }>('SELECT seq, head FROM audit_chains WHERE replica_id = $1', [this.replicaId]);
      const found = rows[0] && { seq: Number(rows[0].seq), head: rows[0].head };
      if (found && this.inDoubt && found.seq === this.inDoubt.seq && found.head === this.inDoubt.head) {
        this.parts.logger.warn('audit trail: the batch whose commit was cut off by the lost connection did commit; its requests had failed, so the trail holds records of answers never sent', { replicaId: this.replicaId, seq: found.seq });
        this.at = found;
      } else if (!found || found.seq !== this.at.seq || found.head !== this.at.head) {
        throw new Error(`the anchor of chain ${this.replicaId} moved while this replica was disconnected: refusing to extend the chain`);
      }
      this.inDoubt = undefined;
      this.adopt(client);
      return client;
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
  }

  private adopt(client: Client): void {
    client.removeAllListeners('error');
    client.on('error', (err) => {
      this.parts.logger.error('audit database connection lost; the next batch reconnects', { replicaId: this.replicaId, cause: err.message });
      if (this.client === client) this.client = undefined;
      void client.end().catch(() => undefined);
    });
    this.client = client;
  }

  private async drop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }
}

/** Verifies the replica's chain (or starts a new one, anchored at seq 0) and returns where it ends. */
async function resumeChain(client: Client, replicaId: string, { mac, logger }: Parts): Promise<ChainEnd> {
  const chain = await verifyChain(client, mac, replicaId, { isEveryBatchMacChecked: false });
  if (!chain.isIntact) throw new AuditTrailRefused(chain.firstBad!);
  if (chain.anchoredSeq === null) {
    const genesis = { seq: 0, head: GENESIS };
    const made = await client.query('INSERT INTO audit_chains (replica_id, seq, head, mac) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [replicaId, 0, GENESIS, (await mac.sign(anchorMessage(replicaId, genesis))).toString('hex')]);
    if (made.rowCount !== 1) throw new Error(`the chain of replica id ${replicaId} appeared during start-up`);
    logger.info('audit trail: a new chain in PostgreSQL, anchored', { replicaId });
    return genesis;
  }
  logger.info('audit trail verified against its anchor in PostgreSQL', { replicaId, seq: chain.end.seq, batches: chain.batches });
  return chain.end;
}

/** The records as one array per column, for a single INSERT … SELECT FROM unnest. */
function columns(records: Array<ReturnType<typeof requestRecord>>): unknown[][] {
  return [
    records.map((r) => r.seq), records.map((r) => r.time), records.map((r) => r.requestId), records.map((r) => r.operation),
    records.map((r) => r.principal), records.map((r) => r.accessKeyId), records.map((r) => r.sourceIp), records.map((r) => r.keyArn),
    records.map((r) => r.status), records.map((r) => r.errorCode), records.map((r) => r.prev), records.map((r) => r.hash),
  ];
}
