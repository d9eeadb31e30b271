import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import Database from 'better-sqlite3';
import { AuditLog, type AuditOptions } from '../../../src/audit/audit-log';
import { auditMac } from '../../../src/audit/audit-mac';
import { AUDIT_MAC_KEY, chainHash, type RequestFields } from '../../../src/audit/audit-record';
import { AuditTrailRefused } from '../../../src/audit/audit-startup';
import { verifyAuditTrail } from '../../../src/audit/audit-verify';
import type { AuditAnchor } from '../../../src/domain/key-repository';
import { KMSInternalException } from '../../../src/errors/kms-errors';
import { FaultInjectingHsm } from '../../../src/hsm/fault-injecting-hsm';
import { createLogger } from '../../../src/logging/logger';
import { SqliteKeyRepository } from '../../../src/store/sqlite-key-repository';
import { FakeHsm } from '../../support/fake-hsm';
import { writeLegacyTrail } from '../../support/legacy-audit-trail';

const fields = (requestId: string): RequestFields => ({
  time: '2026-01-01T00:00:00.000Z', requestId, operation: 'Encrypt', principal: 'arn:aws:iam::111122223333:root', accessKeyId: 'AKIA', sourceIp: '127.0.0.1', keyArn: null, status: 200, errorCode: null,
});

/** A data dir of its own: FakeHsm, a real SQLite store file, the trail in root/audit. */
async function fixture() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-audit-unit-'));
  const fake = new FakeHsm();
  await fake.generateMacKey(AUDIT_MAC_KEY);
  const faults = new FaultInjectingHsm(fake);
  const storeFile = path.join(root, 'qkms.db');
  const store = new SqliteKeyRepository(storeFile);
  const logs: string[] = [];
  const logger = createLogger({ level: 'info', stream: new PassThrough().on('data', (c: Buffer) => logs.push(c.toString())) });
  const dir = path.join(root, 'audit');
  const segment = (n = 1) => path.join(dir, `audit-${String(n).padStart(8, '0')}.jsonl`);
  return {
    root, dir, fake, faults, store, logs, segment,
    open: (options: Partial<AuditOptions> = {}) => AuditLog.open(dir, { mac: auditMac(faults.hsm), anchors: store, logger }, { maxSegmentBytes: 1 << 20, isFailOpen: false, isNewStore: false, ...options }),
    verify: async () => verifyAuditTrail(dir, fake, await store.getAuditAnchor()),
    lines: (n = 1) => fs.readFileSync(segment(n), 'utf8').split('\n').filter(Boolean),
    /** Another connection, as an intruder with write access to the store would use. */
    sql: (statement: string, ...args: unknown[]) => {
      const db = new Database(storeFile);
      try {
        db.prepare(statement).run(...args);
      } finally {
        db.close();
      }
    },
    async cleanup() {
      await store.close();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}
type Fixture = Awaited<ReturnType<typeof fixture>>;

/** Batches [r1], [r2], [r3, r4]: records queued together while no batch is committing go together. */
async function threeBatches(f: Fixture): Promise<void> {
  const log = await f.open({ isNewStore: true });
  await log.record(fields('r1'));
  await log.record(fields('r2'));
  await Promise.all([log.record(fields('r3')), log.record(fields('r4'))]);
  await log.close();
  assert.deepEqual(f.lines().map((l) => JSON.parse(l)).filter((x) => x.type === 'batch').map((h) => h.count), [1, 1, 2]);
}

describe('AuditLog (group commit)', () => {
  let f: Fixture;
  beforeEach(async () => (f = await fixture()));
  afterEach(() => f.cleanup());

  it('resolves a record only once its batch is on disk and anchored in the store, and the trail verifies', async () => {
    const log = await f.open({ isNewStore: true });
    await log.record(fields('r1'));
    const [header, record] = f.lines().map((l) => JSON.parse(l));
    assert.deepEqual([header.type, header.first, header.count, header.head], ['batch', 1, 1, record.hash]);
    assert.deepEqual(Object.keys(record), ['seq', 'type', 'time', 'requestId', 'operation', 'principal', 'accessKeyId', 'sourceIp', 'keyArn', 'status', 'errorCode', 'prev', 'hash']);
    const anchor = (await f.store.getAuditAnchor()) as AuditAnchor;
    assert.deepEqual([anchor.segment, anchor.endOffset, anchor.seq, anchor.head], [1, fs.statSync(f.segment()).size, 1, record.hash]);
    await log.close();
    const r = await f.verify();
    assert.equal(r.isIntact, true, JSON.stringify(r.firstBad));
    assert.deepEqual([r.records, r.batches, r.anchoredSeq, r.unanchoredRecords, r.unfinishedBytes], [1, 1, 1, 0, 0]);
  });

  it('commits the records that arrived while a batch was being committed as one batch, with one header', async () => {
    const log = await f.open({ isNewStore: true });
    await Promise.all(Array.from({ length: 20 }, (_, i) => log.record(fields(`r${i}`))));
    await log.close();
    const headers = f.lines().map((l) => JSON.parse(l)).filter((x) => x.type === 'batch');
    assert.deepEqual(headers.map((h) => h.count), [1, 19]);
    assert.equal((await f.verify()).isIntact, true);
  });

  it('continues the chain across restarts and segments, and every segment but the last holds whole batches', async () => {
    for (let round = 0; round < 3; round++) {
      const log = await f.open({ maxSegmentBytes: 1500, isNewStore: round === 0 });
      for (let i = 0; i < 4; i++) await log.record(fields(`r${round}-${i}`));
      await log.close();
    }
    const segments = fs.readdirSync(f.dir).sort();
    assert.ok(segments.length >= 3, segments.join());
    for (const s of segments) assert.equal(JSON.parse(fs.readFileSync(path.join(f.dir, s), 'utf8').split('\n')[0]).type, 'batch');
    const r = await f.verify();
    assert.equal(r.isIntact, true, JSON.stringify(r.firstBad));
    assert.deepEqual([r.records, r.anchoredSeq], [12, 12]);
  });

  it('fails the batch when the anchor cannot be committed: KMSInternalException, and the batch is cut off the file again', async () => {
    const log = await f.open({ isNewStore: true });
    await log.record(fields('kept'));
    const size = fs.statSync(f.segment()).size;
    const setAnchor = f.store.setAuditAnchor.bind(f.store);
    f.store.setAuditAnchor = async () => {
      throw new Error('SQLITE_FULL: database or disk is full');
    };
    await assert.rejects(log.record(fields('lost')), (e: unknown) => e instanceof KMSInternalException && /could not be recorded in the audit trail; no result is returned/.test(e.message));
    assert.equal(fs.statSync(f.segment()).size, size, 'no partial or unanchored batch remains');
    assert.match(f.logs.join(''), /AUDIT WRITE FAILED.*"requestIds":\["lost"\]/);
    f.store.setAuditAnchor = setAnchor;
    await log.record(fields('after'));
    await log.close();
    const r = await f.verify();
    assert.equal(r.isIntact, true, JSON.stringify(r.firstBad));
    assert.deepEqual(f.lines().map((l) => JSON.parse(l)).filter((x) => x.type === 'request').map((x) => [x.seq, x.requestId]), [[1, 'kept'], [2, 'after']]);
  });

  it('fails the batch when the HSM cannot sign it, and writes nothing', async () => {
    const log = await f.open({ isNewStore: true });
    f.faults.add({ method: 'hmacSign', times: 1, fail: { kind: 'device', ckr: 'CKR_DEVICE_ERROR' } });
    await assert.rejects(log.record(fields('lost')), KMSInternalException);
    assert.equal(fs.statSync(f.segment()).size, 0);
    await log.record(fields('after'));
    await log.close();
    assert.equal((await f.verify()).records, 1);
  });

  it('fail-open (QKMS_AUDIT_FAIL_OPEN) answers anyway, and says so at start and at every failure', async () => {
    const log = await f.open({ isNewStore: true, isFailOpen: true });
    assert.match(f.logs.join(''), /QKMS_AUDIT_FAIL_OPEN is on/);
    f.faults.add({ method: 'hmacSign', times: 2, fail: { kind: 'device', ckr: 'CKR_DEVICE_ERROR' } });
    await log.record(fields('unrecorded'));
    assert.match(f.logs.join(''), /AUDIT WRITE FAILED: QKMS_AUDIT_FAIL_OPEN is on, so these requests are answered WITHOUT an audit record.*unrecorded/);
    await log.close();
  });

  it('refuses records once closed', async () => {
    const log = await f.open({ isNewStore: true });
    await log.close();
    await assert.rejects(log.record(fields('late')), KMSInternalException);
  });
});

describe('AuditLog start-up after a crash', () => {
  let f: Fixture;
  beforeEach(async () => (f = await fixture()));
  afterEach(() => f.cleanup());

  /** r1 anchored; r2's batch written and synced; the anchor still names r1 (killed before its commit). */
  async function crashBeforeAnchor(): Promise<void> {
    const log = await f.open({ isNewStore: true });
    await log.record(fields('r1'));
    const first = (await f.store.getAuditAnchor()) as AuditAnchor;
    await log.record(fields('r2'));
    await log.close();
    await f.store.setAuditAnchor(first);
  }

  it('anchors complete signed batches written after the anchor (killed between fdatasync and the anchor commit)', async () => {
    await crashBeforeAnchor();
    assert.equal((await f.verify()).unanchoredRecords, 1, 'verify sees the batch after the anchor and accepts it');
    const log = await f.open();
    assert.match(f.logs.join(''), /not anchored, are anchored now/);
    await log.record(fields('r3'));
    await log.close();
    const r = await f.verify();
    assert.equal(r.isIntact, true, JSON.stringify(r.firstBad));
    assert.deepEqual([r.records, r.anchoredSeq, r.unanchoredRecords], [3, 3, 0]);
  });

  it('moves a batch cut short by a crash (never acknowledged) to a side file, and the trail verifies', async () => {
    await crashBeforeAnchor();
    const whole = fs.readFileSync(f.segment());
    fs.writeFileSync(f.segment(), whole.subarray(0, whole.length - 40)); // the write stopped inside r2's batch
    const beside = await f.verify();
    assert.equal(beside.isIntact, true, 'an unfinished batch at the end is not tampering');
    assert.ok(beside.unfinishedBytes > 0);
    const log = await f.open();
    await log.record(fields('r2-again'));
    await log.close();
    const aside = fs.readdirSync(f.dir).filter((n) => n.includes('.unfinished-'));
    assert.equal(aside.length, 1);
    assert.ok(whole.toString().endsWith(`${fs.readFileSync(path.join(f.dir, aside[0]), 'utf8')}${whole.subarray(whole.length - 40).toString()}`));
    assert.match(f.logs.join(''), /a batch cut short at the end .* was moved aside/);
    const r = await f.verify();
    assert.equal(r.isIntact, true, JSON.stringify(r.firstBad));
    assert.deepEqual(f.lines().filter((l) => l.includes('"request"')).map((l) => JSON.parse(l).requestId), ['r1', 'r2-again']);
  });

  it('moves a torn last line aside and starts', async () => {
    const log = await f.open({ isNewStore: true });
    await log.record(fields('r1'));
    await log.close();
    fs.appendFileSync(f.segment(), '{"type":"batch","first":2,"cou');
    await (await f.open()).close();
    assert.equal(fs.readdirSync(f.dir).filter((n) => n.includes('.unfinished-')).length, 1);
    assert.equal((await f.verify()).isIntact, true);
  });
});

describe('AuditLog and verify refuse a rewritten trail', () => {
  let f: Fixture;
  beforeEach(async () => {
    f = await fixture();
    await threeBatches(f);
  });
  afterEach(() => f.cleanup());

  const rewrite = (lines: string[]) => fs.writeFileSync(f.segment(), lines.length ? `${lines.join('\n')}\n` : '');
  /** Recomputes prev/hash from line `from` on and the headers' prev/head (their MACs cannot be recomputed). */
  const rechain = (lines: string[], from: number) => {
    const parsed = lines.map((l) => JSON.parse(l));
    let head = '';
    for (let i = 0; i < parsed.length; i++) {
      const p = parsed[i];
      if (p.type === 'batch') continue;
      if (i >= from) {
        p.prev = head || p.prev;
        const { hash: _, ...rest } = p;
        p.hash = chainHash(rest);
      }
      head = p.hash;
    }
    let last = '';
    for (let i = parsed.length - 1; i >= 0; i--) {
      if (parsed[i].type !== 'batch') last ||= parsed[i].hash;
      else {
        parsed[i].head = last;
        parsed[i].prev = i === 0 ? parsed[i].prev : parsed[i - 1].hash;
        last = '';
      }
    }
    return parsed.map((p) => JSON.stringify(p));
  };
  const forged = (lines: string[]) => {
    const last = JSON.parse(lines[lines.length - 1]);
    const record = { ...JSON.parse(lines[1]), seq: last.seq + 1, requestId: 'forged', prev: last.hash };
    const { hash: _, ...rest } = record;
    return { ...record, hash: chainHash(rest) };
  };

  const cases: Array<[string, () => void, RegExp]> = [
    ['a record edited and everything after it re-chained, headers relinked', () => {
      const lines = f.lines();
      lines[3] = lines[3].replace('"status":200', '"status":403');
      rewrite(rechain(lines, 3));
    }, /anchor.*(rewritten|truncated)/],
    ['every record after the first batch deleted', () => rewrite(f.lines().slice(0, 2)), /truncated or emptied/],
    ['the last record cut off', () => rewrite(f.lines().slice(0, -1)), /truncated or emptied/],
    ['the segment emptied', () => rewrite([]), /truncated or emptied/],
    ['the segment deleted', () => fs.rmSync(f.segment()), /no audit trail|missing/],
    ['a record appended while the gateway was down', () => rewrite([...f.lines(), JSON.stringify(forged(f.lines()))]), /no HSM-signed batch header covers/],
    ['a batch appended with a header the HSM did not sign', () => {
      const record = forged(f.lines());
      const header = { type: 'batch', first: record.seq, count: 1, prev: record.prev, head: record.hash, mac: '0'.repeat(64) };
      rewrite([...f.lines(), JSON.stringify(header), JSON.stringify(record)]);
    }, /signature does not verify in the HSM/],
    ['an earlier batch replayed at the end', () => rewrite([...f.lines(), ...f.lines().slice(2, 4)]), /starting at seq 2 where 5 was expected/],
    ['the anchor row deleted', () => f.sql('DELETE FROM audit_anchor'), /no audit anchor/],
    ['the anchor reset to "adopt"', () => f.sql('UPDATE audit_anchor SET segment = NULL, end_offset = NULL, seq = NULL, head = NULL, mac = NULL'), /store was replaced or its anchor reset/],
    ['the anchor moved back without its MAC', () => f.sql('UPDATE audit_anchor SET seq = 2'), /anchor in the key store is not signed by the HSM/],
  ];
  for (const [what, tamper, reason] of cases) {
    it(`${what}: qkms audit verify fails and the gateway does not start`, async () => {
      tamper();
      const r = await f.verify();
      assert.equal(r.isIntact, false, what);
      assert.match(r.firstBad!.reason, reason);
      await assert.rejects(f.open(), (e: unknown) => e instanceof AuditTrailRefused && reason.test(e.message));
    });
  }

  it('truncated after any batch: each cut is refused', async () => {
    const lines = f.lines();
    const cuts = lines.map((l, i) => (i > 0 && JSON.parse(l).type === 'batch' ? i : -1)).filter((i) => i > 0);
    assert.deepEqual(cuts, [2, 4]);
    for (const cut of cuts) {
      rewrite(lines.slice(0, cut));
      assert.match((await f.verify()).firstBad!.reason, /truncated or emptied/, `cut at line ${cut}`);
      await assert.rejects(f.open(), /truncated or emptied/, `cut at line ${cut}`);
    }
  });

  it('a segment removed or renamed from the middle or the end', async () => {
    await f.cleanup();
    f = await fixture();
    for (let round = 0; round < 2; round++) {
      const log = await f.open({ maxSegmentBytes: 1500, isNewStore: round === 0 });
      for (let i = 0; i < 5; i++) await log.record(fields(`r${round}-${i}`));
      await log.close();
    }
    const segments = fs.readdirSync(f.dir).sort();
    assert.ok(segments.length >= 3);
    const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-audit-segments-'));
    for (const s of segments) fs.copyFileSync(path.join(f.dir, s), path.join(copy, s));
    const restore = () => {
      for (const s of fs.readdirSync(f.dir)) fs.rmSync(path.join(f.dir, s));
      for (const s of segments) fs.copyFileSync(path.join(copy, s), path.join(f.dir, s));
    };
    const last = segments[segments.length - 1];
    const tamperings: Array<[string, () => void]> = [
      ['last removed', () => fs.rmSync(path.join(f.dir, last))],
      ['last renamed', () => fs.renameSync(path.join(f.dir, last), path.join(f.dir, `${last}.old`))],
      ['middle removed', () => fs.rmSync(path.join(f.dir, segments[1]))],
      ['middle emptied', () => fs.writeFileSync(path.join(f.dir, segments[1]), '')],
      ['first removed', () => fs.rmSync(path.join(f.dir, segments[0]))],
    ];
    for (const [what, tamper] of tamperings) {
      restore();
      tamper();
      assert.equal((await f.verify()).isIntact, false, what);
      await assert.rejects(f.open(), AuditTrailRefused, what);
    }
    restore();
    assert.equal((await f.verify()).isIntact, true);
    fs.rmSync(copy, { recursive: true, force: true });
  });
});

describe('AuditLog and a trail from before anchors', () => {
  let f: Fixture;
  beforeEach(async () => (f = await fixture()));
  afterEach(() => f.cleanup());

  it('is verified as before, adopted and anchored at the first start after the upgrade, then extended with batches', async () => {
    await writeLegacyTrail(f.dir, f.fake, { checkpoints: 2, checkpointEvery: 3, unsignedTail: 2 });
    fs.appendFileSync(f.segment(), '{"seq":11,"type":"requ'); // torn by a crash of the old gateway
    assert.equal(await f.store.getAuditAnchor(), 'adopt', 'the migration leaves the anchor to be adopted');
    const before = await f.verify();
    assert.deepEqual([before.isIntact, before.records, before.checkpoints, before.anchoredSeq], [true, 8, 2, null]);
    const log = await f.open();
    const adopted = f.logs.map((l) => JSON.parse(l)).find((l) => /audit trail adopted and anchored/.test(l.message));
    assert.deepEqual([adopted?.records, adopted?.checkpoints, adopted?.anchoredSeq], [8, 2, 10]);
    await log.record(fields('after-upgrade'));
    await log.close();
    const r = await f.verify();
    assert.equal(r.isIntact, true, JSON.stringify(r.firstBad));
    assert.deepEqual([r.records, r.batches, r.checkpoints, r.anchoredSeq], [9, 1, 2, 11]);
    await (await f.open()).close();
  });

  it('is never adopted again: cut after the adoption, it is refused', async () => {
    const lines = await writeLegacyTrail(f.dir, f.fake, { checkpoints: 1, checkpointEvery: 3, unsignedTail: 2 });
    await (await f.open()).close();
    fs.writeFileSync(f.segment(), `${lines.slice(0, 4).join('\n')}\n`);
    assert.equal((await f.verify()).isIntact, false);
    await assert.rejects(f.open(), /truncated or emptied/);
  });

  it('a legacy record edited before the first start is refused, with the old reason', async () => {
    const lines = await writeLegacyTrail(f.dir, f.fake, { checkpoints: 1, checkpointEvery: 3, unsignedTail: 0 });
    lines[1] = lines[1].replace('"status":200', '"status":201');
    fs.writeFileSync(f.segment(), `${lines.join('\n')}\n`);
    await assert.rejects(f.open(), /line 2 \(seq 2\): hash does not match the record \(the record was edited\)/);
  });

  it('a key store created by this start refuses a trail that exists already (it belongs to another store)', async () => {
    await writeLegacyTrail(f.dir, f.fake, { checkpoints: 1, checkpointEvery: 3, unsignedTail: 0 });
    await assert.rejects(f.open({ isNewStore: true }), /created by this start, but the directory holds a trail \(3 records\)/);
  });
});
