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
import { type PostgresCluster, sharedPostgres, skipWithoutPostgres } from '../support/postgres';

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
    skipWithoutPostgres(this);
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

describe('Audit trail in PostgreSQL when the database goes away', function () {
  this.timeout(60000);
  let cluster: PostgresCluster;
  before(async function () {
    skipWithoutPostgres(this);
    cluster = await sharedPostgres();
    await ensureInternalKey(integration().hsm, AUDIT_MAC_KEY);
  });

  const open = (url: string, isFailOpen: boolean, logger = logCapture().logger) => PostgresAuditLog.open(url, { mac: auditMac(integration().hsm), logger }, { isFailOpen, replicaId: 'replica-a' });
  const state = async (url: string) => ({
    anchor: Number((await sql(url, "SELECT seq FROM audit_chains WHERE replica_id = 'replica-a'"))[0].seq),
    batches: Number((await sql(url, 'SELECT count(*) AS n FROM audit_batches'))[0].n),
    records: (await sql(url, 'SELECT request_id FROM audit_records ORDER BY seq')).map((r) => r.request_id),
  });
  /** Ends the audit connection from the server side, as a failover or an administrator would. */
  const terminate = (url: string) => sql(adminUrl(url), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'qkms-audit'", [dbName(url)]);
  const allowConnections = (url: string, isAllowed: boolean) => sql(adminUrl(url), `ALTER DATABASE ${dbName(url)} ALLOW_CONNECTIONS ${isAllowed}`);

  it('fails the record with KMSInternalException while the database is unreachable, writes nothing of it, and resumes the chain once it is back', async () => {
    const url = await cluster.createDatabase('audit');
    const { logger, lines } = logCapture();
    const log = await open(url, false, logger);
    await log.record(fields('before'));
    await allowConnections(url, false);
    await terminate(url);
    await assert.rejects(log.record(fields('lost')), (err: Error) => err instanceof KMSInternalException && /could not be recorded in the audit trail/.test(err.message));
    assert.ok(lines.some((l) => l.includes('AUDIT WRITE FAILED') && l.includes('lost')));
    await allowConnections(url, true);
    assert.deepEqual(await state(url), { anchor: 1, batches: 1, records: ['before'] });
    await log.record(fields('after'));
    await log.close();
    assert.deepEqual(await state(url), { anchor: 2, batches: 2, records: ['before', 'after'] });
    assert.equal((await verifyPostgresTrail(url, integration().hsm)).isIntact, true);
  });

  it('a connection cut in the middle of a batch\'s transaction leaves nothing of the batch: not its anchor, its batch row or any record', async () => {
    const url = await cluster.createDatabase('audit');
    const log = await open(url, false);
    await log.record(fields('before'));
    const blocker = new Client({ connectionString: url });
    await blocker.connect();
    try {
      // The batch moves the anchor, then waits to insert its records behind this lock.
      await blocker.query('BEGIN; LOCK TABLE audit_records IN EXCLUSIVE MODE');
      const lost = assert.rejects(log.record(fields('lost')), KMSInternalException);
      for (let i = 0; ; i++) {
        const waiting = await sql(adminUrl(url), "SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND application_name = 'qkms-audit' AND wait_event_type = 'Lock'", [dbName(url)]);
        if (waiting.length > 0) break;
        assert.ok(i < 100, 'the batch never reached the lock');
        await new Promise((r) => setTimeout(r, 50));
      }
      await terminate(url);
      await lost;
      await blocker.query('ROLLBACK');
    } finally {
      await blocker.end();
    }
    assert.deepEqual(await state(url), { anchor: 1, batches: 1, records: ['before'] });
    await log.record(fields('after'));
    await log.close();
    assert.deepEqual(await state(url), { anchor: 2, batches: 2, records: ['before', 'after'] });
    assert.equal((await verifyPostgresTrail(url, integration().hsm)).isIntact, true);
  });

  it('QKMS_AUDIT_FAIL_OPEN answers anyway, logged as AUDIT WRITE FAILED', async () => {
    const url = await cluster.createDatabase('audit');
    const { logger, lines } = logCapture();
    const log = await open(url, true, logger);
    await allowConnections(url, false);
    await terminate(url);
    await log.record(fields('unrecorded'));
    assert.ok(lines.some((l) => l.includes('AUDIT WRITE FAILED: QKMS_AUDIT_FAIL_OPEN is on') && l.includes('unrecorded')));
    await allowConnections(url, true);
    await log.close();
    assert.deepEqual((await state(url)).records, []);
  });
});

describe('A rewritten PostgreSQL audit chain stops the replica and qkms audit verify', function () {
  this.timeout(240000);
  let cluster: PostgresCluster;
  before(async function () {
    skipWithoutPostgres(this);
    cluster = await sharedPostgres();
    await ensureInternalKey(integration().hsm, AUDIT_MAC_KEY);
  });

  const open = (url: string, replicaId: string) => PostgresAuditLog.open(url, { mac: auditMac(integration().hsm), logger: logCapture().logger }, { isFailOpen: false, replicaId });
  const verify = (url: string) => verifyPostgresTrail(url, integration().hsm);

  /** Chain `victim` in batches [1], [2], [3, 4, 5] and an untouched chain `bystander`; the anchor row after the first batch. */
  async function deployment(): Promise<{ url: string; firstAnchor: Record<string, any> }> {
    const url = await cluster.createDatabase('audit');
    const [victim, bystander] = [await open(url, 'victim'), await open(url, 'bystander')];
    await victim.record(fields('v1'));
    const firstAnchor = (await sql(url, "SELECT seq, head, mac FROM audit_chains WHERE replica_id = 'victim'"))[0];
    await victim.record(fields('v2'));
    await Promise.all([victim.record(fields('v3')), victim.record(fields('v4')), victim.record(fields('v5')), bystander.record(fields('b1'))]);
    await Promise.all([victim.close(), bystander.close()]);
    assert.deepEqual((await sql(url, "SELECT count FROM audit_batches WHERE replica_id = 'victim' ORDER BY first_seq")).map((b) => b.count), [1, 1, 3]);
    return { url, firstAnchor };
  }

  /** Re-hashes records from..5 of the victim after an edit, and relinks their batch rows: all but the HSM's MACs. */
  async function rechain(url: string, from: number, anchorToo: boolean): Promise<void> {
    const rows = await sql(url, "SELECT * FROM audit_records WHERE replica_id = 'victim' ORDER BY seq");
    let head = rows[from - 2]?.hash ?? '0'.repeat(64);
    for (const r of rows.slice(from - 1)) {
      const rec = requestRecord(Number(r.seq), { time: r.time, requestId: r.request_id, operation: r.operation, principal: r.principal, accessKeyId: r.access_key_id, sourceIp: r.source_ip, keyArn: r.key_arn, status: r.status, errorCode: r.error_code }, head);
      await sql(url, "UPDATE audit_records SET prev = $2, hash = $3 WHERE replica_id = 'victim' AND seq = $1", [r.seq, rec.prev, rec.hash]);
      head = rec.hash;
    }
    for (const b of await sql(url, "SELECT * FROM audit_batches WHERE replica_id = 'victim'")) {
      const first = Number(b.first_seq);
      const last = first + b.count - 1;
      const [prev, end] = await Promise.all([first - 1, last].map(async (seq) => (await sql(url, "SELECT hash FROM audit_records WHERE replica_id = 'victim' AND seq = $1", [seq]))[0]?.hash ?? '0'.repeat(64)));
      await sql(url, "UPDATE audit_batches SET prev = $2, head = $3 WHERE replica_id = 'victim' AND first_seq = $1", [first, prev, end]);
    }
    if (anchorToo) await sql(url, "UPDATE audit_chains SET head = $1 WHERE replica_id = 'victim'", [head]);
  }

  const v = (where: string) => `replica_id = 'victim' AND ${where}`;
  const tamperings: Array<[string, (url: string, firstAnchor: Record<string, any>) => Promise<unknown>, RegExp]> = [
    ['a record edited', (url) => sql(url, `UPDATE audit_records SET error_code = 'AccessDeniedException' WHERE ${v('seq = 2')}`), /seq 2\): hash does not match the record \(the record was edited\)/],
    ['a record deleted', (url) => sql(url, `DELETE FROM audit_records WHERE ${v('seq = 4')}`), /sequence number 5 where 4 was expected/],
    [
      'two records swapped',
      (url) => sql(url, `UPDATE audit_records SET seq = CASE seq WHEN 3 THEN -3 ELSE -4 END WHERE ${v('seq IN (3, 4)')}; UPDATE audit_records SET seq = -seq + (CASE seq WHEN -3 THEN 1 ELSE -1 END) WHERE ${v('seq < 0')}`),
      /seq 3\): prev does not match the previous record/,
    ],
    [
      'a record inserted, correctly chained, after the last batch',
      async (url) => {
        const last = (await sql(url, `SELECT hash FROM audit_records WHERE ${v('seq = 5')}`))[0];
        const r = requestRecord(6, fields('forged'), last.hash);
        await sql(url, "INSERT INTO audit_records (replica_id, seq, time, request_id, operation, principal, access_key_id, source_ip, key_arn, status, error_code, prev, hash) VALUES ('victim', 6, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
          [r.time, r.requestId, r.operation, r.principal, r.accessKeyId, r.sourceIp, r.keyArn, r.status, r.errorCode, r.prev, r.hash]);
      },
      /seq 6\): a record that no HSM-signed batch covers/,
    ],
    ['the tail deleted (records and their batch row)', (url) => sql(url, `DELETE FROM audit_records WHERE ${v('seq >= 3')}; DELETE FROM audit_batches WHERE ${v('first_seq >= 3')}`), /the chain ends at seq 2, its anchor names seq 5: records were deleted from its end/],
    [
      'the anchor rolled back to an earlier, genuinely signed row',
      (url, first) => sql(url, "UPDATE audit_chains SET seq = $1, head = $2, mac = $3 WHERE replica_id = 'victim'", [first.seq, first.head, first.mac]),
      /the chain goes on past the anchored seq 1 to 5: the anchor was rolled back/,
    ],
    [
      'a record edited and the chain, batch rows and anchor recomputed without the HSM key',
      async (url) => {
        await sql(url, `UPDATE audit_records SET error_code = 'AccessDeniedException' WHERE ${v('seq = 2')}`);
        await rechain(url, 2, true);
      },
      /the anchor's signature does not verify in the HSM/,
    ],
    [
      'a record edited and the chain and batch rows recomputed, the anchor left alone',
      async (url) => {
        await sql(url, `UPDATE audit_records SET error_code = 'AccessDeniedException' WHERE ${v('seq = 2')}`);
        await rechain(url, 2, false);
      },
      // Start-up checks the anchor (one HSM call), verify every batch row's MAC first.
      /the last record is not the head the HSM-signed anchor names|seq 2\): the batch's signature does not verify in the HSM/,
    ],
    ['the anchor row deleted', (url) => sql(url, "DELETE FROM audit_chains WHERE replica_id = 'victim'"), /a batch, but the chain has no anchor row/],
  ];

  for (const [what, tamper, reason] of tamperings) {
    it(`${what}: the replica refuses to start (exit 3) and qkms audit verify exits 1, both naming the chain and why`, async () => {
      const { url, firstAnchor } = await deployment();
      assert.equal((await verify(url)).isIntact, true);
      await tamper(url, firstAnchor);
      await assert.rejects(open(url, 'victim'), (err: Error) => err instanceof AuditTrailRefused && /chain victim/.test(err.message) && reason.test(err.message));
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-pg-audit-'));
      try {
        const [verified, started] = await Promise.all([runQkms(['audit', 'verify'], env(url, dataDir)), startRefused(url, dataDir)]);
        assert.equal(verified.code, 1, verified.stdout + verified.stderr);
        assert.match(verified.stdout, /^AUDIT TRAIL TAMPERED: chain victim/m);
        assert.match(verified.stdout, reason);
        assert.match(verified.stdout, /^chain bystander intact: 1 records in 1 signed batches/m);
        assert.equal(started.code, 3, started.output);
        assert.match(started.output, /refusing to start: the audit trail does not verify/);
        assert.match(started.output, reason);
      } finally {
        fs.rmSync(dataDir, { recursive: true, force: true });
      }
    });
  }

  it('qkms audit verify reports every chain of an intact deployment, and exits 0', async () => {
    const { url } = await deployment();
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-pg-audit-'));
    try {
      const run = await runQkms(['--json', 'audit', 'verify'], env(url, dataDir));
      assert.equal(run.code, 0, run.stderr);
      const r = JSON.parse(run.stdout);
      assert.equal(r.isIntact, true);
      assert.deepEqual(r.chains.map((c: any) => [c.replicaId, c.records, c.batches, c.anchoredSeq]), [['bystander', 1, 1, 1], ['victim', 5, 3, 5]]);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  /** A gateway (or the CLI) on the run's token and this database, replica id `victim`. */
  function env(url: string, dataDir: string): Record<string, string> {
    const { token } = integration();
    return { QKMS_STORE_URL: url, QKMS_REPLICA_ID: 'victim', QKMS_DATA_DIR: dataDir, QKMS_PKCS11_MODULE: token.modulePath, QKMS_PKCS11_PIN: token.pin, QKMS_PKCS11_TOKEN_LABEL: token.label, SOFTHSM2_CONF: token.confPath };
  }

  async function startRefused(url: string, dataDir: string): Promise<{ code: number | null; output: string }> {
    const { child, output, exited } = spawnGateway(env(url, dataDir));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
    const code = await exited;
    clearTimeout(timer);
    return { code, output: output() };
  }
});
