import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { CreateKeyCommand, DecryptCommand, GenerateDataKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { chainHash } from '../../src/audit/audit-record';
import { verifyAuditTrail } from '../../src/audit/audit-verify';
import { startChildGateway } from '../support/child-gateway';
import { integration } from '../support/integration-hooks';
import { startGateway, TEST_CREDENTIALS, type Harness } from '../support/harness';

const run = promisify(execFile);

describe('Audit trail', () => {
  let gw: Harness;
  let auditDir: string;
  let dataKey: string;
  before(async () => {
    gw = await startGateway(integration().hsm, { QKMS_AUDIT_CHECKPOINT_RECORDS: '4' });
    auditDir = path.join(gw.config.dataDir, 'audit');
    const id = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    const dk = await gw.client.send(new GenerateDataKeyCommand({ KeyId: id, KeySpec: 'AES_256', EncryptionContext: { secret: 'context-value' } }));
    dataKey = Buffer.from(dk.Plaintext!).toString('base64');
    await gw.client.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob, EncryptionContext: { secret: 'context-value' } }));
    const intruder = new KMSClient({ endpoint: gw.url, region: 'us-east-1', credentials: { ...TEST_CREDENTIALS, secretAccessKey: 'wrong-secret-0123456789' }, maxAttempts: 1 });
    await assert.rejects(intruder.send(new CreateKeyCommand({})));
    for (let i = 0; i < 5; i++) await gw.client.send(new GenerateDataKeyCommand({ KeyId: id, NumberOfBytes: 16 }));
    await gw.deps.audit.checkpoint();
  });
  after(() => gw.close());

  const records = (dir = auditDir) =>
    fs.readdirSync(dir).sort().flatMap((f) => fs.readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)));
  /** A copy of the trail to tamper with, as one segment's lines. */
  const copy = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-audit-copy-'));
    for (const f of fs.readdirSync(auditDir)) fs.copyFileSync(path.join(auditDir, f), path.join(dir, f));
    const file = path.join(dir, fs.readdirSync(dir).sort()[0]);
    return { dir, file, lines: fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) };
  };
  const write = (file: string, lines: string[]) => fs.writeFileSync(file, `${lines.join('\n')}\n`);

  it('records every request, allowed or denied, with who, what, where and the outcome, and nothing secret', async () => {
    const all = records();
    const requests = all.filter((r) => r.type === 'request');
    assert.ok(requests.length >= 9);
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
    assert.ok(all.some((r) => r.type === 'checkpoint'));
  });

  it('verifies intact, with checkpoints signed in the HSM', async () => {
    const r = await verifyAuditTrail(auditDir, integration().hsm);
    assert.equal(r.isIntact, true, JSON.stringify(r.firstBad));
    assert.ok(r.checkpoints >= 2);
    assert.equal(r.unsignedTail, 0);
  });

  it('names the first bad record after a deletion, an edit or a reordering', async () => {
    const probe = copy();
    const target = probe.lines.findIndex((l, i) => i >= 3 && l.includes('"status":200'));
    fs.rmSync(probe.dir, { recursive: true });
    const cases: Array<[string, (lines: string[]) => string[], number, RegExp]> = [
      ['deleted', (l) => l.filter((_, i) => i !== 2), 3, /deleted, inserted or moved/],
      ['edited', (l) => l.map((x, i) => (i === target ? x.replace('"status":200', '"status":201') : x)), target + 1, /edited/],
      ['reordered', (l) => [l[0], l[2], l[1], ...l.slice(3)], 2, /deleted, inserted or moved/],
    ];
    for (const [what, change, line, reason] of cases) {
      const c = copy();
      write(c.file, change(c.lines));
      const r = await verifyAuditTrail(c.dir, integration().hsm);
      assert.equal(r.isIntact, false, what);
      assert.equal(r.firstBad!.line, line, what);
      assert.match(r.firstBad!.reason, reason, what);
      fs.rmSync(c.dir, { recursive: true });
    }
  });

  it('catches an edit whose chain was recomputed, at the next checkpoint (its HMAC needs the HSM)', async () => {
    const c = copy();
    const parsed = c.lines.map((l) => JSON.parse(l));
    parsed[1].principal = 'arn:aws:iam::111122223333:user/someone-else';
    for (let i = 1; i < parsed.length; i++) {
      parsed[i].prev = parsed[i - 1].hash;
      if (parsed[i].type === 'checkpoint') parsed[i].coversHash = parsed[i - 1].hash; // the attacker cannot re-sign
      const { hash: _, ...rest } = parsed[i];
      parsed[i].hash = chainHash(rest);
    }
    write(c.file, parsed.map((p) => JSON.stringify(p)));
    const r = await verifyAuditTrail(c.dir, integration().hsm);
    assert.equal(r.isIntact, false);
    assert.match(r.firstBad!.reason, /checkpoint signature does not verify/);
    assert.equal(parsed[r.firstBad!.line - 1].type, 'checkpoint');
    fs.rmSync(c.dir, { recursive: true });
  });
});

describe('Audit trail rotation and restarts', function () {
  this.timeout(90000);

  it('continues the chain across segments and restarts; npm run audit:verify proves it and names tampering', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-audit-proc-'));
    const env = { QKMS_DATA_DIR: dataDir, QKMS_AUDIT_SEGMENT_BYTES: '4096', QKMS_AUDIT_CHECKPOINT_RECORDS: '3' };
    try {
      for (let round = 0; round < 2; round++) {
        const gw = await startChildGateway(env);
        const id = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
        for (let i = 0; i < 12; i++) await gw.client.send(new GenerateDataKeyCommand({ KeyId: id, KeySpec: 'AES_256' }));
        await gw.stop();
      }
      const segments = fs.readdirSync(path.join(dataDir, 'audit')).sort();
      assert.ok(segments.length >= 3, `rotated into ${segments.length} segments`);
      const verify = () =>
        run(process.execPath, ['--require', require.resolve('tsx/cjs'), path.resolve(__dirname, '../../src/cli/qkms.ts'), 'audit', 'verify'], {
          env: { ...process.env, SOFTHSM2_CONF: '', ...env },
        });
      const ok = await verify();
      assert.match(ok.stdout, /^audit trail intact: 26 records, \d+ checkpoints; signed up to seq \d+, 0 newer records not yet checkpointed/);
      fs.rmSync(path.join(dataDir, 'audit', segments[1]));
      await assert.rejects(verify(), (e: { code: number; stdout: string }) => e.code === 1 && /AUDIT TRAIL TAMPERED: first bad record at audit-00000003\.jsonl line 1/.test(e.stdout));
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('Audit trail and aborted requests', () => {
  it('records a request whose client went away before the answer', async () => {
    const gw = await startGateway(integration().hsm);
    try {
      gw.faults.add({ method: 'generateKek', times: 1, delayMs: 300 });
      const controller = new AbortController();
      const pending = gw.client.send(new CreateKeyCommand({}), { abortSignal: controller.signal });
      setTimeout(() => controller.abort(), 100);
      await assert.rejects(pending);
      await new Promise((r) => setTimeout(r, 400));
      const dir = path.join(gw.config.dataDir, 'audit');
      const lines = fs.readdirSync(dir).flatMap((f) => fs.readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)));
      assert.ok(lines.some((r) => r.operation === 'CreateKey' && r.errorCode === 'ClientClosedRequest'), JSON.stringify(lines.slice(-3)));
    } finally {
      await gw.close();
    }
  });
});
