import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { Client } from 'pg';
import { auditMac } from '../../src/audit/audit-mac';
import { AUDIT_MAC_KEY, requestRecord, type RequestFields } from '../../src/audit/audit-record';
import { AuditTrailRefused } from '../../src/audit/audit-startup';
import { PostgresAuditLog, type PostgresAuditOptions } from '../../src/audit/postgres-audit-log';
import { verifyPostgresTrail } from '../../src/audit/postgres-audit-verify';
import { ensureInternalKey } from '../../src/domain/token-reconciliation';
import { KMSInternalException } from '../../src/errors/kms-errors';
import { createLogger } from '../../src/logging/logger';
import { spawnGateway } from '../support/child-gateway';
import { runQkms } from '../support/cli';
import { integration } from '../support/integration-hooks';
import { postgresUnavailable, sharedPostgres, type PostgresCluster } from '../support/postgres';

const fields = (requestId: string): RequestFields => ({
  time: new Date().toISOString(), requestId, operation: 'Encrypt', principal: 'arn:aws:iam::111122223333:root', accessKeyId: 'AKIA', sourceIp: '127.0.0.1', keyArn: null, status: 200, errorCode: null,
});

async function sql<T extends object = Record<string, any>>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text, params)).rows;
  } finally {
    await client.end();
  }
}

/** The same server's maintenance database: to act on a database from outside it. */
const adminUrl = (url: string) => Object.assign(new URL(url), { pathname: '/postgres' }).toString();
const dbName = (url: string) => new URL(url).pathname.slice(1);

function logCapture() {
  const lines: string[] = [];
  return { lines, logger: createLogger({ level: 'info', stream: new PassThrough().on('data', (c: Buffer) => lines.push(c.toString())) }) };
}

describe('Audit trail in PostgreSQL (replicas sharing one database)', function () {
  this.timeout(120000);
  let cluster: PostgresCluster;
  before(async function () {
    const unavailable = postgresUnavailable();
    if (unavailable) {
      console.log(`      skipped: ${unavailable}`);
      this.skip();
    }
    this.timeout(60000);
    cluster = await sharedPostgres();
    await ensureInternalKey(integration().hsm, AUDIT_MAC_KEY);
  });

  const open = (url: string, replicaId: string | undefined, options: Partial<PostgresAuditOptions> = {}, logger = logCapture().logger) =>
    PostgresAuditLog.open(url, { mac: auditMac(integration().hsm), logger }, { isFailOpen: false, replicaId, ...options });
  const verify = (url: string) => verifyPostgresTrail(url, integration().hsm);
  const count = async (url: string, table: string, replicaId: string) => Number((await sql(url, `SELECT count(*) AS n FROM ${table} WHERE replica_id = $1`, [replicaId]))[0].n);

  it('makes each record durable before it resolves, commits concurrent records in few signed batches, and the chain verifies', async () => {
    const url = await cluster.createDatabase('audit');
    const log = await open(url, 'replica-a');
    for (let i = 0; i < 3; i++) {
      await log.record(fields(`one-${i}`));
      assert.equal((await sql(url, 'SELECT 1 FROM audit_records WHERE request_id = $1', [`one-${i}`])).length, 1, 'committed, seen from another connection');
    }
    await Promise.all(Array.from({ length: 40 }, (_, i) => log.record(fields(`many-${i}`))));
    await log.close();
    const r = await verify(url);
    assert.equal(r.isIntact, true, JSON.stringify(r));
    assert.deepEqual(r.chains.map((c) => [c.replicaId, c.records, c.anchoredSeq]), [['replica-a', 43, 43]]);
    assert.ok(r.chains[0].batches < 20, `group commit: ${r.chains[0].batches} batches for 43 records`);
    await assert.rejects(log.record(fields('late')), KMSInternalException);
  });

  it('two replicas writing concurrently to one database: both chains verify, every record is there exactly once', async () => {
    const url = await cluster.createDatabase('audit');
    const [a, b] = await Promise.all([open(url, 'replica-a'), open(url, 'replica-b')]);
    const sent: string[] = [];
    const load = (log: PostgresAuditLog, name: string) =>
      Promise.all(Array.from({ length: 8 }, async (_, worker) => {
        for (let i = 0; i < 25; i++) {
          const id = `${name}-${worker}-${i}`;
          await log.record(fields(id));
          sent.push(id);
        }
      }));
    await Promise.all([load(a, 'a'), load(b, 'b')]);
    await Promise.all([a.close(), b.close()]);
    const r = await verify(url);
    assert.equal(r.isIntact, true, JSON.stringify(r));
    assert.deepEqual(r.chains.map((c) => [c.replicaId, c.records]), [['replica-a', 200], ['replica-b', 200]]);
    const stored = (await sql<{ request_id: string }>(url, 'SELECT request_id FROM audit_records')).map((x) => x.request_id);
    assert.equal(stored.length, 400);
    assert.deepEqual(new Set(stored), new Set(sent));
  });

  it('refuses a replica id a live replica holds; after it stops, the next start verifies and continues its chain; without an id, each process gets its own', async () => {
    const url = await cluster.createDatabase('audit');
    const first = await open(url, 'replica-a');
    await first.record(fields('r1'));
    await assert.rejects(open(url, 'replica-a'), /replica id replica-a is being written by another live gateway process/);
    await first.close();
    const again = await open(url, 'replica-a');
    await again.record(fields('r2'));
    await again.close();
    assert.deepEqual((await sql(url, "SELECT seq, request_id FROM audit_records WHERE replica_id = 'replica-a' ORDER BY seq")).map((x) => [Number(x.seq), x.request_id]), [[1, 'r1'], [2, 'r2']]);
    const [x, y] = [await open(url, undefined), await open(url, undefined)];
    const host = os.hostname().replace(/[^A-Za-z0-9._-]/g, '-');
    assert.deepEqual([x.replicaId, y.replicaId], [`${host}-1`, `${host}-2`]);
    await Promise.all([x.close(), y.close()]);
  });
});
