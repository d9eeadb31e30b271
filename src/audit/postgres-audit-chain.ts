import type { ClientBase } from 'pg';
import type { AuditMac } from './audit-mac';
import { GENESIS, requestRecord } from './audit-record';
import type { TrailProblem } from './audit-scan';
import { anchorMessage, batchMessage } from './postgres-audit-schema';

export interface ChainVerification {
  replicaId: string;
  isIntact: boolean;
  records: number;
  batches: number;
  /** The seq the chain's HSM-signed anchor names; null for a chain without an anchor row. */
  anchoredSeq: number | null;
  /** Where the chain ends (what the next batch follows), when it is intact. */
  end: { seq: number; head: string };
  firstBad?: TrailProblem;
}

const PAGE = 2000;
const LOWEST = '-9223372036854775808';

interface BatchRow { first_seq: string; count: number; prev: string; head: string; mac: string }
interface RecordRow {
  seq: string; time: string; request_id: string; operation: string | null; principal: string | null; access_key_id: string | null;
  source_ip: string | null; key_arn: string | null; status: number; error_code: string | null; prev: string; hash: string;
}

class Stop extends Error {}

/**
 * Walks one replica's chain from its first record: every record's seq, prev and hash, every batch
 * row's first, count, prev and head (and its HSM HMAC when `isEveryBatchMacChecked`), then the
 * HSM-signed anchor, which must name exactly the last record. Batches and the anchor commit in one
 * transaction, so nothing may follow the anchor: a record or batch after it is an anchor rolled
 * back or an insertion. Run inside one snapshot (verifyChains) beside running replicas.
 */
export async function verifyChain(client: ClientBase, mac: AuditMac, replicaId: string, { isEveryBatchMacChecked }: { isEveryBatchMacChecked: boolean }): Promise<ChainVerification> {
  const result: ChainVerification = { replicaId, isIntact: true, records: 0, batches: 0, anchoredSeq: null, end: { seq: 0, head: GENESIS } };
  const fail = (reason: string, seq?: number): never => {
    result.isIntact = false;
    result.firstBad = { file: `chain ${replicaId}`, line: 0, ...(seq !== undefined && { seq }), reason };
    throw new Stop();
  };
  try {
    const anchor = (await client.query<{ seq: string; head: string; mac: string }>('SELECT seq, head, mac FROM audit_chains WHERE replica_id = $1', [replicaId])).rows[0];
    if (anchor) {
      result.anchoredSeq = Number(anchor.seq);
      if (!(await mac.verify(anchorMessage(replicaId, { seq: result.anchoredSeq, head: anchor.head }), Buffer.from(anchor.mac, 'hex')))) {
        fail('the anchor\'s signature does not verify in the HSM (the anchor row was edited or forged)');
      }
    }
    const records = rows<RecordRow>(client, 'audit_records', 'seq', replicaId);
    let { seq, head } = result.end;
    for await (const b of rows<BatchRow>(client, 'audit_batches', 'first_seq', replicaId)) {
      const first = Number(b.first_seq);
      if (!anchor) fail('a batch, but the chain has no anchor row (the anchor was deleted)', first);
      if (first !== seq + 1) fail(`a batch starting at seq ${first} where ${seq + 1} was expected (records deleted, inserted or moved)`, first);
      if (b.prev !== head) fail('the batch\'s prev does not match the previous record (records deleted, inserted or moved)', first);
      if (isEveryBatchMacChecked && !(await mac.verify(batchMessage(replicaId, { first, count: b.count, prev: b.prev, head: b.head }), Buffer.from(b.mac, 'hex')))) {
        fail('the batch\'s signature does not verify in the HSM (forged or altered)', first);
      }
      for (let i = 0; i < b.count; i++) {
        const next = await records.next();
        if (next.done) fail(`the batch from seq ${first} has ${i} of its ${b.count} records: records were deleted from the end`, first + i);
        const r = next.value;
        if (Number(r.seq) !== seq + 1) fail(`sequence number ${r.seq} where ${seq + 1} was expected (a record was deleted, inserted or moved)`, Number(r.seq));
        if (r.prev !== head) fail('prev does not match the previous record (a record was deleted, inserted or moved)', Number(r.seq));
        const fields = { time: r.time, requestId: r.request_id, operation: r.operation, principal: r.principal, accessKeyId: r.access_key_id, sourceIp: r.source_ip, keyArn: r.key_arn, status: r.status, errorCode: r.error_code };
        if (requestRecord(seq + 1, fields, head).hash !== r.hash) fail('hash does not match the record (the record was edited)', seq + 1);
        seq += 1;
        head = r.hash;
      }
      if (head !== b.head) fail('the batch\'s last record is not the head its signed batch row names (the batch was altered)', seq);
      result.batches++;
      result.records += b.count;
    }
    const extra = await records.next();
    if (!extra.done) fail('a record that no HSM-signed batch covers (added, or its batch row removed)', Number(extra.value.seq));
    if (!anchor) {
      if (seq > 0) fail('records, but the chain has no anchor row (the anchor was deleted)');
    } else if (seq < result.anchoredSeq!) {
      fail(`the chain ends at seq ${seq}, its anchor names seq ${result.anchoredSeq}: records were deleted from its end`, seq);
    } else if (seq > result.anchoredSeq!) {
      fail(`the chain goes on past the anchored seq ${result.anchoredSeq} to ${seq}: the anchor was rolled back, or batches were added`, result.anchoredSeq! + 1);
    } else if (head !== anchor.head) {
      fail('the last record is not the head the HSM-signed anchor names: the chain was rewritten', seq);
    }
    result.end = { seq, head };
  } catch (err) {
    if (!(err instanceof Stop)) throw err;
  }
  return result;
}

/**
 * Every chain of the deployment, in one read-only snapshot: batches commit with their anchor, so a
 * replica writing beside us is seen either before or after a batch, never in the middle. Chains
 * are named by any table, so the records of a chain whose anchor row was deleted are found too.
 */
export async function verifyChains(client: ClientBase, mac: AuditMac): Promise<ChainVerification[]> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const ids = await client.query<{ replica_id: string }>(
      'SELECT replica_id FROM audit_chains UNION SELECT DISTINCT replica_id FROM audit_batches UNION SELECT DISTINCT replica_id FROM audit_records ORDER BY replica_id',
    );
    const chains: ChainVerification[] = [];
    for (const { replica_id } of ids.rows) chains.push(await verifyChain(client, mac, replica_id, { isEveryBatchMacChecked: true }));
    return chains;
  } finally {
    await client.query('COMMIT').catch(() => undefined);
  }
}

/** One chain's rows in key order, a page at a time (a chain may hold millions). */
async function* rows<T extends object>(client: ClientBase, table: 'audit_records' | 'audit_batches', key: 'seq' | 'first_seq', replicaId: string): AsyncGenerator<T> {
  for (let after = LOWEST; ; ) {
    const page = await client.query<T & Record<string, string>>(`SELECT * FROM ${table} WHERE replica_id = $1 AND ${key} > $2 ORDER BY ${key} LIMIT ${PAGE}`, [replicaId, after]);
    for (const row of page.rows) yield row as T;
    if (page.rows.length < PAGE) return;
    after = page.rows[page.rows.length - 1][key];
  }
}
