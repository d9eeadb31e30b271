import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { CreateGrantCommand, PutKeyPolicyCommand, RotateKeyOnDemandCommand } from '@aws-sdk/client-kms';
import { objectLabel } from '../../src/domain/key-repository';
import type { ComplianceReport } from '../../src/report/compliance-report';
import { startChildGateway, type ChildGateway } from '../support/child-gateway';
import { hasStackTrace, qkmsJson, runQkms } from '../support/cli';
import { TEST_CREDENTIALS } from '../support/harness';
import { registerSecret } from '../support/secrets';
import { pkcs11Tool, toolObjects } from '../support/token-state';

const CREDENTIALS_ENV = { QKMS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId, QKMS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey };
const EVIL_DESCRIPTION = '<script>alert("pwned")</script>';
const EVIL_TAG = '"><img src=x onerror=alert(1)>';
const EVIL_POLICY_MARK = '</pre><script>steal()</script>';

/**
 * Every row of every table, read through a fresh connection: the store's content as any reader
 * sees it. With a gateway running in WAL mode, qkms.db's own bytes do not change on a write (it
 * lands in qkms.db-wal), so comparing the file would prove nothing.
 */
function storeDump(dataDir: string): string {
  const db = new Database(path.join(dataDir, 'qkms.db'), { readonly: true, fileMustExist: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all() as string[];
    const rows = Object.fromEntries(tables.map((t) => [t, db.prepare(`SELECT * FROM "${t}" ORDER BY rowid`).all()]));
    return JSON.stringify({ userVersion: db.pragma('user_version', { simple: true }), rows }, (_k, v: unknown) =>
      v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' ? Buffer.from((v as { data: number[] }).data).toString('hex') : v,
    );
  } finally {
    db.close();
  }
}

/** pkcs11-tool's Access words for the flags it prints, as our report names them. */
const ACCESS_WORDS: Record<string, string> = {
  sensitive: 'CKA_SENSITIVE',
  'always sensitive': 'CKA_ALWAYS_SENSITIVE',
  extractable: 'CKA_EXTRACTABLE',
  'never extractable': 'CKA_NEVER_EXTRACTABLE',
  local: 'CKA_LOCAL',
};

describe('qkms report (compliance report)', function () {
  this.timeout(180000);
  let dataDir: string;
  let outDir: string;
  let gateway: ChildGateway | undefined;
  const direct = () => ({ ...CREDENTIALS_ENV, QKMS_DATA_DIR: dataDir });
  const readReport = () => JSON.parse(fs.readFileSync(path.join(outDir, 'report.json'), 'utf8')) as ComplianceReport;
  let keys: { sym: string; ec: string; hmac: string };

  before(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-report-'));
    outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-report-out-'));
    await qkmsJson(['init'], direct());
    registerSecret(fs.readFileSync(path.join(dataDir, 'pin'), 'utf8'));
    const sym = (await qkmsJson(['keys', 'create', '--description', EVIL_DESCRIPTION, '--tag', `owner=${EVIL_TAG}`], direct())).KeyId;
    const ec = (await qkmsJson(['keys', 'create', '--key-spec', 'ECC_NIST_P256', '--key-usage', 'SIGN_VERIFY', '--description', 'signer'], direct())).KeyId;
    const hmac = (await qkmsJson(['keys', 'create', '--key-spec', 'HMAC_256', '--key-usage', 'GENERATE_VERIFY_MAC'], direct())).KeyId;
    await qkmsJson(['aliases', 'create', 'alias/reported', sym], direct());
    keys = { sym, ec, hmac };
  });
  afterEach(async () => {
    if (gateway) await gateway.stop();
    gateway = undefined;
  });
  after(() => {
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.rmSync(outDir, { recursive: true, force: true });
  });

  it('runs beside a gateway without writing, and reports what the token itself says, matching pkcs11-tool', async () => {
    gateway = await startChildGateway({ QKMS_DATA_DIR: dataDir });
    await gateway.client.send(new RotateKeyOnDemandCommand({ KeyId: keys.sym }));
    const policy = JSON.stringify({ Version: '2012-10-17', Statement: [{ Sid: EVIL_POLICY_MARK, Effect: 'Allow', Principal: { AWS: 'arn:aws:iam::111122223333:root' }, Action: 'kms:*', Resource: '*' }] });
    await gateway.client.send(new PutKeyPolicyCommand({ KeyId: keys.sym, PolicyName: 'default', Policy: policy }));
    const grant = await gateway.client.send(new CreateGrantCommand({ KeyId: keys.sym, GranteePrincipal: 'arn:aws:iam::111122223333:role/app', Operations: ['Decrypt'], Name: 'app-decrypt' }));

    const auditDir = path.join(dataDir, 'audit');
    const snapshot = () => fs.readdirSync(auditDir).map((f) => fs.readFileSync(path.join(auditDir, f), 'utf8')).join('');
    const auditBefore = snapshot();
    const storeBefore = storeDump(dataDir);
    assert.ok(storeBefore.includes(grant.GrantId!), 'the dump sees the gateway\'s latest write (still in the WAL)');
    const run = await runQkms(['report', '--out', outDir], direct());
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^3 keys: 3 pass, 0 fail; audit trail intact$/m);
    assert.match(run.stderr, /key 1\/3/, 'progress goes to stderr');
    assert.equal(snapshot(), auditBefore, 'the report wrote no audit record');
    assert.equal(storeDump(dataDir), storeBefore, 'the report changed nothing in the store');

    const report = readReport();
    assert.equal(report.summary.isAuditIntact, true);
    assert.deepEqual(report.orphanedObjects, []);
    const sym = report.keys.find((k) => k.keyId === keys.sym)!;
    assert.equal(sym.description, EVIL_DESCRIPTION);
    assert.deepEqual(sym.aliases, ['alias/reported']);
    assert.deepEqual(sym.materials.map((m) => [m.version, m.rotationType, m.isCurrent]), [[1, 'ORIGINAL', false], [2, 'ON_DEMAND', true]]);
    assert.equal(sym.policy, policy);
    assert.deepEqual(sym.grants.map((g) => [g.grantId, g.name, g.operations]), [[grant.GrantId, 'app-decrypt', ['Decrypt']]]);
    const ec = report.keys.find((k) => k.keyId === keys.ec)!;
    assert.equal(ec.policy, undefined);
    assert.deepEqual(ec.materials[0].objects.map((o) => [o.role, o.objects[0].objectClass, o.objects[0].keyType, o.objects[0].curve]), [
      ['private', 'CKO_PRIVATE_KEY', 'CKK_EC', 'P-256'],
      ['public', 'CKO_PUBLIC_KEY', 'CKK_EC', 'P-256'],
    ]);
    for (const k of report.keys) assert.equal(k.verdict.neverLeftHsm, true, `${k.keyId}: ${k.verdict.failures.join('; ')}`);

    // Every object the report names, as pkcs11-tool reads it from the same token.
    const tool = new Map(toolObjects(dataDir).map((o) => [o.label, o]));
    let compared = 0;
    for (const k of report.keys) {
      for (const m of k.materials) {
        assert.deepEqual(m.objects.map((o) => o.label).sort(), m.objects.map((o) => objectLabel(k.keyId, m.version, o.role)).sort());
        for (const finding of m.objects) assert.deepEqual(finding.objects.map((o) => o.id), [finding.id], 'found by its id');
        for (const finding of m.objects) {
          const [facts] = finding.objects;
          const seen = tool.get(finding.label);
          assert.ok(seen, `pkcs11-tool lists ${finding.label}; it listed ${[...tool.keys()].join(", ")}`);
          assert.equal(`CKO_${seen.kind.toUpperCase()}_KEY`, facts.objectClass, finding.label);
          for (const [word, flag] of Object.entries(ACCESS_WORDS)) {
            assert.equal(seen.access.has(word), facts.flags[flag] === true, `${finding.label} ${flag}: pkcs11-tool says ${[...seen.access].join(', ')}`);
          }
          if (seen.allowed) assert.deepEqual([...(facts.allowedMechanisms ?? [])].sort(), [...seen.allowed].sort(), finding.label);
          compared++;
        }
      }
    }
    assert.equal(compared, 2 * 2 + 2 + 1, 'kek+mac of two symmetric versions, the EC pair, the HMAC key');
  });

  it('escapes every user-supplied value in a self-contained HTML file that holds no secret', () => {
    const page = fs.readFileSync(path.join(outDir, 'report.html'), 'utf8');
    assert.ok(!page.includes('<script'), 'no script element, from the description, policy or anywhere');
    assert.ok(!page.includes('<img'), 'the tag value did not become markup');
    assert.ok(page.includes('&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;'), 'the description is shown, escaped');
    assert.ok(page.includes('&quot;&gt;&lt;img src=x onerror=alert(1)&gt;'), 'the tag is shown, escaped');
    assert.ok(page.includes('&lt;/pre&gt;&lt;script&gt;steal()&lt;/script&gt;'), 'the policy is shown, escaped');
    assert.ok(!/<(link|iframe|object|embed)\b|\b(src|href)=["']?(https?:)?\/\//i.test(page), 'nothing is loaded from elsewhere');
    assert.match(page, /Content-Security-Policy" content="default-src 'none'/);
    const pin = fs.readFileSync(path.join(dataDir, 'pin'), 'utf8');
    for (const file of ['report.html', 'report.json']) {
      const text = fs.readFileSync(path.join(outDir, file), 'utf8');
      assert.ok(!text.includes(pin) && !text.includes(TEST_CREDENTIALS.secretAccessKey), `${file} holds no PIN or secret key`);
    }
  });

  it('fails a key whose object is missing and one whose object was replaced by an extractable one, naming object and reason', async () => {
    const kek = objectLabel(keys.sym, 2, 'kek');
    const hmac = objectLabel(keys.hmac, 1, 'hmac');
    pkcs11Tool(dataDir, '--delete-object', '--type', 'secrkey', '--label', kek);
    pkcs11Tool(dataDir, '--delete-object', '--type', 'secrkey', '--label', hmac);
    // The replacement carries the id QKMS looks the HMAC key up by (the store knows it).
    const db = new Database(path.join(dataDir, 'qkms.db'), { readonly: true });
    const ids = db.prepare('SELECT object_ids FROM key_materials WHERE key_id = ? AND version = 1').get(keys.hmac) as { object_ids: string };
    db.close();
    pkcs11Tool(dataDir, '--keygen', '--key-type', 'GENERIC:32', '--label', hmac, '--id', (JSON.parse(ids.object_ids) as { hmac: string }).hmac, '--extractable');

    const run = await runQkms(['report', '--out', outDir], direct());
    assert.equal(run.code, 1, 'a failing key fails the command, for CI');
    assert.match(run.stdout, /^3 keys: 1 pass, 2 fail; audit trail intact$/m);
    assert.ok(!hasStackTrace(run.stderr));
    const report = readReport();
    const verdict = (id: string) => report.keys.find((k) => k.keyId === id)!.verdict;
    assert.equal(verdict(keys.ec).neverLeftHsm, true);
    assert.deepEqual(verdict(keys.sym), { neverLeftHsm: false, failures: [`version 2 kek (${kek}): object missing from the token`] });
    const weak = verdict(keys.hmac);
    assert.equal(weak.neverLeftHsm, false);
    for (const reason of ['CKA_SENSITIVE is false (must be true)', 'CKA_ALWAYS_SENSITIVE is false (must be true)', 'CKA_NEVER_EXTRACTABLE is false (must be true)', 'CKA_EXTRACTABLE is true (must be false)']) {
      assert.ok(weak.failures.includes(`version 1 hmac (${hmac}): ${reason}`), `${reason} in ${weak.failures.join('; ')}`);
    }
    const page = fs.readFileSync(path.join(outDir, 'report.html'), 'utf8');
    assert.match(page, /<span class="fail">2 fail<\/span>/);
    assert.ok(page.includes('object missing from the token'));
    // The replaced object's value is readable on the token, but the report never reads values.
    const value = /VALUE:\s+([0-9a-f]+)/.exec(pkcs11Tool(dataDir, '--list-objects', '--type', 'secrkey', '--label', hmac))?.[1];
    assert.ok(value && value.length === 64);
    assert.ok(!fs.readFileSync(path.join(outDir, 'report.json'), 'utf8').includes(value));
  });

  it('fails as an error, not as a verdict, when the token fails while being read', async () => {
    const faults = path.join(outDir, 'faults.json');
    // Start-up reads each token object's label once (the handle cache); the report's reads come after.
    const startupReads = toolObjects(dataDir).length;
    fs.writeFileSync(faults, JSON.stringify([{ function: 'C_GetAttributeValue', ckr: 'CKR_DEVICE_ERROR', skip: startupReads }]));
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-report-faulty-'));
    try {
      const run = await runQkms(['report', '--out', out], { ...direct(), QKMS_FAULTS_FILE: faults });
      assert.equal(run.code, 3, `exit 3 (HSM unavailable), not 1 (a failing key): ${run.stdout}${run.stderr}`);
      assert.match(run.stderr, /HSM failed while the report read it.*CKR_DEVICE_ERROR/);
      assert.doesNotMatch(run.stdout, /fail/, 'no verdict');
      assert.ok(!hasStackTrace(run.stderr));
      assert.deepEqual(fs.readdirSync(out), [], 'no report written');
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
      fs.rmSync(faults, { force: true });
    }
  });

  it('refuses --endpoint and a data dir without a store, with a clear message', async () => {
    const remote = await runQkms(['--endpoint', 'http://127.0.0.1:1', 'report', '--out', outDir], direct());
    assert.equal(remote.code, 2);
    assert.match(remote.stderr, /reads the token and the store directly/);
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-empty-'));
    try {
      const none = await runQkms(['report', '--out', outDir], { QKMS_DATA_DIR: empty });
      assert.equal(none.code, 2);
      assert.match(none.stderr, /no key store in/);
      assert.deepEqual(fs.readdirSync(empty), [], 'no token or store was created');
      // Not a misleading "no key store" for a PostgreSQL deployment: what it does not read yet, and what to use.
      const pg = await runQkms(['report', '--out', outDir], { QKMS_DATA_DIR: empty, QKMS_STORE_URL: 'postgres://qkms@127.0.0.1:1/qkms' });
      assert.equal(pg.code, 2);
      assert.match(pg.stderr, /PostgreSQL deployment \(QKMS_STORE_URL\) is not supported by it yet: use qkms audit verify/);
      assert.deepEqual(fs.readdirSync(empty), []);
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });
});
