import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CreateKeyCommand, DecryptCommand, GenerateDataKeyCommand, KMSClient, KMSInternalException, ListKeysCommand } from '@aws-sdk/client-kms';
import Database from 'better-sqlite3';
import { createApp } from '../../src/app';
import { chainHash } from '../../src/audit/audit-record';
import { verifyAuditTrail } from '../../src/audit/audit-verify';
import { loadConfig } from '../../src/config/load-config';
import { buildGateway } from '../../src/gateway';
import { createLogger } from '../../src/logging/logger';
import { createServer } from '../../src/server';
import { spawnGateway, startChildGateway } from '../support/child-gateway';
import { runQkms } from '../support/cli';
import { startGateway, TEST_CREDENTIALS, type Harness } from '../support/harness';
import { integration } from '../support/integration-hooks';
import { writeLegacyTrail } from '../support/legacy-audit-trail';

type Line = Record<string, any>;
const segmentsOf = (dir: string) => fs.readdirSync(dir).filter((f) => /^audit-\d{8}\.jsonl$/.test(f)).sort();
const linesOf = (file: string) => fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
const recordsOf = (dir: string): Line[] => segmentsOf(dir).flatMap((f) => linesOf(path.join(dir, f)).map((l) => JSON.parse(l)));
const requestIds = (dir: string) => new Set(recordsOf(dir).filter((r) => r.type === 'request').map((r) => r.requestId as string));
const write = (file: string, lines: string[]) => fs.writeFileSync(file, lines.length ? `${lines.join('\n')}\n` : '');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Audit trail', () => {
  let gw: Harness;
  let auditDir: string;
  let dataKey: string;
  before(async () => {
    gw = await startGateway(integration().hsm, {}, { single: 'reads and edits the files of the embedded audit trail (postgres-audit.test.ts tampers with the trail in PostgreSQL)' });
    auditDir = path.join(gw.config.dataDir, 'audit');
    const id = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    const dk = await gw.client.send(new GenerateDataKeyCommand({ KeyId: id, KeySpec: 'AES_256', EncryptionContext: { secret: 'context-value' } }));
    dataKey = Buffer.from(dk.Plaintext!).toString('base64');
    await gw.client.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob, EncryptionContext: { secret: 'context-value' } }));
    const intruder = new KMSClient({ endpoint: gw.url, region: 'us-east-1', credentials: { ...TEST_CREDENTIALS, secretAccessKey: 'wrong-secret-0123456789' }, maxAttempts: 1 });
    await assert.rejects(intruder.send(new CreateKeyCommand({})));
    for (let i = 0; i < 5; i++) await gw.client.send(new GenerateDataKeyCommand({ KeyId: id, NumberOfBytes: 16 }));
  });
  after(() => gw.close());

  const verify = async (dir = auditDir) => verifyAuditTrail(dir, integration().hsm, await gw.deps.keys.getAuditAnchor());
  /** A copy of the trail to tamper with, as one segment's lines. */
  const copy = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-audit-copy-'));
    for (const f of fs.readdirSync(auditDir)) fs.copyFileSync(path.join(auditDir, f), path.join(dir, f));
    const file = path.join(dir, segmentsOf(dir)[0]);
    return { dir, file, lines: linesOf(file) };
  };

  it('records every request, allowed or denied, before answering it, with who, what, where and the outcome, and nothing secret', async () => {
    const all = recordsOf(auditDir);
    const requests = all.filter((r) => r.type === 'request');
    assert.equal(requests.length, 9, 'every answer the client received has its record already');
    const gdk = requests.find((r) => r.operation === 'GenerateDataKey')!;
    assert.deepEqual(Object.keys(gdk), ['seq', 'type', 'time', 'requestId', 'operation', 'principal', 'accessKeyId', 'sourceIp', 'keyArn', 'status', 'errorCode', 'prev', 'hash']);
    assert.equal(gdk.principal, 'arn:aws:iam::111122223333:root');
    assert.match(gdk.keyArn, /^arn:verenc:111122223333:key\//);
    assert.equal(gdk.sourceIp, '127.0.0.1');
    assert.equal(gdk.status, 200);
    const denied = requests.find((r) => r.errorCode === 'InvalidSignatureException')!;
    assert.deepEqual([denied.status, denied.principal, denied.operation], [400, null, null]);
    const text = fs.readdirSync(auditDir).map((f) => fs.readFileSync(path.join(auditDir, f), 'utf8')).join('');
    for (const secret of [dataKey, 'context-value', TEST_CREDENTIALS.secretAccessKey]) assert.ok(!text.includes(secret));
    assert.equal(all.filter((r) => r.type === 'batch').length, 9, 'one request at a time: one signed batch each');
  });

  it('verifies intact against the anchor in the store, every batch signed in the HSM', async () => {
    const r = await verify();
    assert.equal(r.isIntact, true, JSON.stringify(r.firstBad));
    assert.deepEqual([r.records, r.batches, r.anchoredSeq, r.unanchoredRecords, r.unfinishedBytes], [9, 9, 9, 0, 0]);
  });

  it('names the first bad record after a deletion, an edit or a reordering', async () => {
    const cases: Array<[string, (lines: string[]) => string[], number, RegExp]> = [
      ['deleted', (l) => l.filter((_, i) => i !== 3), 4, /a batch header where record 2 of the batch announced at line 3 was expected/],
      ['edited', (l) => l.map((x, i) => (i === 5 ? x.replace('"status":200', '"status":201') : x)), 6, /edited/],
      ['reordered', (l) => [l[0], l[1], l[4], l[5], l[2], l[3], ...l.slice(6)], 3, /a batch starting at seq 3 where 2 was expected/],
    ];
    for (const [what, change, line, reason] of cases) {
      const c = copy();
      write(c.file, change(c.lines));
      const r = await verify(c.dir);
      assert.equal(r.isIntact, false, what);
      assert.equal(r.firstBad!.line, line, what);
      assert.match(r.firstBad!.reason, reason, what);
      fs.rmSync(c.dir, { recursive: true });
    }
  });

  it('catches an edit whose chain and batch headers were recomputed: the HSM-signed anchor names another head', async () => {
    const c = copy();
    const parsed = c.lines.map((l) => JSON.parse(l));
    parsed[1].principal = 'arn:aws:iam::111122223333:user/someone-else';
    let head = parsed[0].prev;
    for (const p of parsed) {
      if (p.type === 'batch') {
        p.prev = head;
        continue;
      }
      p.prev = head;
      const { hash: _, ...rest } = p;
      head = p.hash = chainHash(rest);
    }
    parsed.forEach((p, i) => p.type === 'batch' && (p.head = parsed[i + p.count].hash)); // the attacker cannot re-sign them
    write(c.file, parsed.map((p) => JSON.stringify(p)));
    const r = await verify(c.dir);
    assert.equal(r.isIntact, false);
    assert.match(r.firstBad!.reason, /anchor.*(rewritten|truncated)/);
    fs.rmSync(c.dir, { recursive: true });
  });

  it('answers a request whose record cannot be written with KMSInternalException and never its result', async () => {
    const requests = () => recordsOf(auditDir).filter((r) => r.type === 'request').length;
    const before = requests();
    const id = (await gw.client.send(new ListKeysCommand({}))).Keys![0].KeyId!;
    const keys = gw.deps.keys;
    const setAnchor = keys.setAuditAnchor.bind(keys);
    keys.setAuditAnchor = async () => {
      throw new Error('SQLITE_FULL: database or disk is full');
    };
    try {
      const refused = (e: unknown) => e instanceof KMSInternalException && e.message === 'The request could not be recorded in the audit trail; no result is returned.';
      await assert.rejects(gw.client.send(new GenerateDataKeyCommand({ KeyId: id, KeySpec: 'AES_256' })), refused);
      await assert.rejects(gw.client.send(new ListKeysCommand({})), refused);
    } finally {
      keys.setAuditAnchor = setAnchor;
    }
    // The HSM cannot sign the batch: the same.
    gw.faults.add({ method: 'hmacSign', times: 2, fail: { kind: 'device', ckr: 'CKR_DEVICE_ERROR' } });
    await assert.rejects(gw.client.send(new ListKeysCommand({})), (e: unknown) => e instanceof KMSInternalException && /could not be recorded/.test(e.message));
    assert.equal(requests(), before + 1, 'only the first ListKeys was recorded');
    assert.match(gw.logText(), /AUDIT WRITE FAILED: these requests fail with KMSInternalException and return no result/);
    await gw.client.send(new ListKeysCommand({}));
    assert.equal((await verify()).isIntact, true);
  });
});

describe('Audit trail and aborted requests', () => {
  it('records a request whose client went away before the answer', async () => {
    const gw = await startGateway(integration().hsm, {}, { single: 'reads and edits the files of the embedded audit trail (postgres-audit.test.ts tampers with the trail in PostgreSQL)' });
    try {
      gw.faults.add({ method: 'generateKek', times: 1, delayMs: 300 });
      const controller = new AbortController();
      const pending = gw.client.send(new CreateKeyCommand({}), { abortSignal: controller.signal });
      setTimeout(() => controller.abort(), 100);
      await assert.rejects(pending);
      await sleep(400);
      const lines = recordsOf(path.join(gw.config.dataDir, 'audit'));
      assert.ok(lines.some((r) => r.operation === 'CreateKey' && r.errorCode === 'ClientClosedRequest'), JSON.stringify(lines.slice(-3)));
    } finally {
      await gw.close();
    }
  });
});

describe('Audit trail of a data dir from before anchors', () => {
  it('starts: the trail is verified as before, adopted and anchored once, then extended with signed batches', async () => {
    const hsm = integration().hsm;
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-audit-legacy-'));
    const auditDir = path.join(dataDir, 'audit');
    const config = loadConfig({ QKMS_DATA_DIR: dataDir, QKMS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId, QKMS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey });
    const logs: string[] = [];
    const logger = createLogger({ level: 'info', stream: new (require('node:stream').PassThrough)().on('data', (c: Buffer) => logs.push(c.toString())) });
    try {
      await (await buildGateway(config, hsm, logger)).close({ keepHsm: true });
      // What the store migration leaves in a store of the previous version, next to its trail.
      const db = new Database(path.join(dataDir, 'qkms.db'));
      db.exec('UPDATE audit_anchor SET segment = NULL, end_offset = NULL, seq = NULL, head = NULL, mac = NULL');
      db.close();
      fs.rmSync(auditDir, { recursive: true });
      await writeLegacyTrail(auditDir, hsm, { checkpoints: 2, checkpointEvery: 4, unsignedTail: 3 });

      const gateway = await buildGateway(config, hsm, logger);
      assert.match(logs.join(''), /audit trail adopted and anchored/);
      const server = createServer(config, createApp(gateway.deps));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const client = new KMSClient({ endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, region: 'us-east-1', credentials: TEST_CREDENTIALS, maxAttempts: 1 });
      await client.send(new ListKeysCommand({}));
      client.destroy();
      await new Promise((resolve) => server.close(resolve));
      const anchor = await gateway.deps.keys.getAuditAnchor();
      await gateway.close({ keepHsm: true });
      const r = await verifyAuditTrail(auditDir, hsm, anchor);
      assert.equal(r.isIntact, true, JSON.stringify(r.firstBad));
      assert.deepEqual([r.records, r.checkpoints, r.batches, r.anchoredSeq], [12, 2, 1, 14]);
      await (await buildGateway(config, hsm, logger)).close({ keepHsm: true });
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

/** A copy of a stopped data dir with its embedded token, whose softhsm2.conf then names the copy's token dir. */
function copyDataDir(from: string): string {
  const to = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-audit-tampered-'));
  fs.cpSync(from, to, { recursive: true });
  const conf = path.join(to, 'softhsm2.conf');
  fs.writeFileSync(conf, fs.readFileSync(conf, 'utf8').split(from).join(to));
  return to;
}

/** A gateway process that is expected to refuse: its exit code and log. */
async function startRefused(dataDir: string): Promise<{ code: number | null; output: string }> {
  const { child, output, exited } = spawnGateway({ QKMS_DATA_DIR: dataDir });
  const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
  const code = await exited;
  clearTimeout(timer);
  return { code, output: output() };
}

const auditVerify = (dataDir: string) => runQkms(['audit', 'verify'], { QKMS_DATA_DIR: dataDir });

describe('A rewritten audit trail stops qkms audit verify and the gateway', function () {
  this.timeout(240000);
  let base: string;
  before(async function () {
    this.timeout(60000);
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-audit-base-'));
    const gw = await startChildGateway({ QKMS_DATA_DIR: base, QKMS_AUDIT_SEGMENT_BYTES: '4096' });
    const id = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    for (let round = 0; round < 4; round++) {
      await Promise.all(Array.from({ length: 5 }, () => gw.client.send(new GenerateDataKeyCommand({ KeyId: id, KeySpec: 'AES_256' }))));
    }
    assert.equal(await gw.stop(), 0);
    assert.ok(segmentsOf(path.join(base, 'audit')).length >= 3);
  });
  after(() => fs.rmSync(base, { recursive: true, force: true }));

  const last = (dir: string, back = 0) => {
    const segments = segmentsOf(dir);
    return path.join(dir, segments[segments.length - 1 - back]);
  };
  const tamperings: Array<[string, (dir: string) => void, RegExp]> = [
    [
      'a record edited, everything after it re-chained, the later batch headers dropped',
      (dir) => {
        const lines = linesOf(last(dir)).map((l) => JSON.parse(l));
        const at = lines.findIndex((l) => l.type === 'request');
        lines[at].errorCode = 'AccessDeniedException';
        let head = lines[at].prev;
        const rechained = lines.slice(at).filter((l) => l.type === 'request').map((l) => {
          l.prev = head;
          const { hash: _, ...rest } = l;
          head = l.hash = chainHash(rest);
          return l;
        });
        write(last(dir), [...lines.slice(0, at), ...rechained].map((l) => JSON.stringify(l)));
      },
      /batch's last record is not the head|no HSM-signed batch header covers|anchor/,
    ],
    ['the records after the first signed batch deleted', (dir) => write(last(dir), linesOf(last(dir)).slice(0, JSON.parse(linesOf(last(dir))[0]).count + 1)), /truncated or emptied/],
    ['the last record deleted (what a crash in the middle of a batch leaves, but that batch was anchored)', (dir) => write(last(dir), linesOf(last(dir)).slice(0, -1)), /truncated or emptied/],
    ['the last segment deleted', (dir) => fs.rmSync(last(dir)), /anchored segment is missing/],
    ['the last two segments deleted', (dir) => [last(dir, 1), last(dir)].forEach((f) => fs.rmSync(f)), /anchored segment is missing/],
    ['the last segment renamed', (dir) => fs.renameSync(last(dir), `${last(dir)}.old`), /anchored segment is missing/],
    ['the segment file emptied', (dir) => write(last(dir), []), /truncated or emptied/],
    [
      'a record appended while the gateway was down',
      (dir) => {
        const lines = linesOf(last(dir));
        const tail = JSON.parse(lines[lines.length - 1]);
        const forged: Line = { ...tail, seq: tail.seq + 1, requestId: 'forged', prev: tail.hash };
        delete forged.hash;
        write(last(dir), [...lines, JSON.stringify({ ...forged, hash: chainHash(forged) })]);
      },
      /no HSM-signed batch header covers/,
    ],
  ];
  for (const [what, tamper, reason] of tamperings) {
    it(`${what}: audit verify exits 1 and the gateway refuses to start (exit 3), both saying why`, async () => {
      const dir = copyDataDir(base);
      try {
        tamper(path.join(dir, 'audit'));
        const [verified, started] = await Promise.all([auditVerify(dir), startRefused(dir)]);
        assert.equal(verified.code, 1, verified.stdout + verified.stderr);
        assert.match(verified.stdout, /^AUDIT TRAIL TAMPERED: /);
        assert.match(verified.stdout, reason);
        assert.equal(started.code, 3, started.output);
        assert.match(started.output, /refusing to start: the audit trail does not verify against its anchor/);
        assert.match(started.output, reason);
        assert.doesNotMatch(started.output, /"message":"ready"/);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('a torn last line from a crash does not stop the start: it is moved aside, and the trail verifies', async () => {
    const dir = copyDataDir(base);
    try {
      fs.appendFileSync(last(path.join(dir, 'audit')), '{"type":"batch","first":99,"count":3,"pr');
      const gw = await startChildGateway({ QKMS_DATA_DIR: dir });
      await gw.client.send(new ListKeysCommand({}));
      assert.equal(await gw.stop(), 0);
      assert.match(gw.output(), /a batch cut short at the end .* was moved aside/);
      const verified = await auditVerify(dir);
      assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Audit trail after kill -9 under load', function () {
  this.timeout(180000);
  it('restarts every time, the trail verifies, and every answer a client received has its record', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-audit-kill-'));
    const answered: string[] = [];
    let failed = 0;
    try {
      let keyId: string | undefined;
      for (let round = 0; round < 4; round++) {
        const gw = await startChildGateway({ QKMS_DATA_DIR: dataDir });
        keyId ??= (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
        let isLoading = true;
        const clients = Array.from({ length: 16 }, async () => {
          while (isLoading) {
            try {
              answered.push((await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }))).$metadata.requestId!);
            } catch {
              failed++;
            }
          }
        });
        await sleep(600 + 150 * round);
        await gw.stop('SIGKILL');
        isLoading = false;
        await Promise.all(clients);
      }
      const gw = await startChildGateway({ QKMS_DATA_DIR: dataDir });
      assert.equal(await gw.stop(), 0);
      const verified = await auditVerify(dataDir);
      assert.equal(verified.code, 0, verified.stdout + verified.stderr);
      const recorded = requestIds(path.join(dataDir, 'audit'));
      assert.ok(answered.length > 100, `${answered.length} answers`);
      assert.deepEqual(answered.filter((id) => !recorded.has(id)), [], 'answered without a record');
      console.log(`      ${answered.length} answered requests over 4 kills, all recorded; ${failed} cut off by the kills`);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('Audit trail on a full disk', function () {
  this.timeout(120000);
  it('answers no request without its durable record, leaves no partial record, and serves again once space returns', async function () {
    if (process.getuid?.() !== 0) {
      console.log('      skipped: mounting a small tmpfs for the audit directory needs root');
      this.skip();
    }
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-audit-full-'));
    const auditDir = path.join(dataDir, 'audit');
    fs.mkdirSync(auditDir);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', auditDir], { stdio: 'pipe' });
    } catch (err) {
      // Root in a container without CAP_SYS_ADMIN: say so rather than fail on the machine's limits.
      console.log(`      skipped: this root may not mount a tmpfs here: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`);
      fs.rmSync(dataDir, { recursive: true, force: true });
      this.skip();
    }
    try {
      const gw = await startChildGateway({ QKMS_DATA_DIR: dataDir });
      const ok: string[] = [];
      const refused: string[] = [];
      try {
        const keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
        const filler = path.join(auditDir, 'filler');
        fillUp(filler);
        const gdk = async () => {
          try {
            ok.push((await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }))).$metadata.requestId!);
          } catch (err) {
            assert.ok(err instanceof KMSInternalException && /could not be recorded in the audit trail/.test(err.message), String(err));
            refused.push(err.$metadata.requestId!);
          }
        };
        for (let i = 0; i < 12; i++) await gdk();
        await Promise.all(Array.from({ length: 12 }, gdk));
        assert.ok(refused.length >= 12, `${refused.length} refused, ${ok.length} answered while full`);
        assert.ok(gw.output().split('\n').some((l) => l.includes('AUDIT WRITE FAILED') && l.includes('ENOSPC')), 'the failures are logged with their cause');
        fs.rmSync(filler);
        const whileFull = ok.length;
        for (let i = 0; i < 3; i++) await gdk();
        assert.equal(ok.length, whileFull + 3, 'serves again once space returns');
      } finally {
        assert.equal(await gw.stop(), 0);
      }
      const verified = await auditVerify(dataDir);
      assert.equal(verified.code, 0, verified.stdout + verified.stderr);
      for (const f of segmentsOf(auditDir)) assert.ok(fs.readFileSync(path.join(auditDir, f), 'utf8').endsWith('\n'), `${f} ends with a whole record`);
      const recorded = requestIds(auditDir);
      assert.deepEqual(ok.filter((id) => !recorded.has(id)), [], 'answered without a record');
      assert.deepEqual(refused.filter((id) => recorded.has(id)), [], 'refused, yet recorded as answered');
    } finally {
      execFileSync('umount', [auditDir]);
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

/** Writes until the file system says ENOSPC. */
function fillUp(file: string): void {
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(4096, 0x2e);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    fs.closeSync(fd);
  }
}
