import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { CreateKeyCommand, DecryptCommand, DependencyTimeoutException, DescribeKeyCommand, EncryptCommand, GenerateDataKeyCommand, KeyUnavailableException, KMSClient, NotFoundException } from '@aws-sdk/client-kms';
import { listeningAddress, spawnGateway, startChildGateway, type ChildGateway } from '../support/child-gateway';
import { startGateway, TEST_CREDENTIALS, type Harness } from '../support/harness';
import { integration } from '../support/integration-hooks';
import { registerSecret } from '../support/secrets';

/** One sample of the Prometheus text format: `name{label="value",…} number`. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseMetrics(text: string): Sample[] {
  return text
    .split('\n')
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      assert.ok(m, `not a Prometheus sample line: ${line}`);
      const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
      return { name: m[1], labels, value: Number(m[3]) };
    });
}

/** The sum of the samples named `name` whose labels include `labels` (0 when there are none). */
function total(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);
}

async function scrape(url: string): Promise<{ text: string; samples: Sample[] }> {
  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  return { text, samples: parseMetrics(text) };
}

interface ProbeJson {
  status: string;
  checks: Record<string, { ok: boolean; detail: string }>;
  reasons: string[];
}

async function probe(url: string, which: 'health' | 'ready'): Promise<{ status: number; body: ProbeJson }> {
  const res = await fetch(`${url}/${which}`);
  return { status: res.status, body: (await res.json()) as ProbeJson };
}

const STORE_PROBE_CACHE_MS = 1000;
const TOKEN_CHECK_EVERY_MS = 250;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Scrapes until `isThere(samples)`: the HSM thread pushes its PKCS#11 figures on a 1 s timer, which
 * runs late on a loaded machine and after the thread reconnected, so a fixed sleep races it.
 */
async function scrapeUntil(url: string, isThere: (samples: Sample[]) => boolean, what: string): Promise<Sample[]> {
  const deadline = Date.now() + 10000;
  for (;;) {
    const { samples } = await scrape(url);
    if (isThere(samples)) return samples;
    assert.ok(Date.now() < deadline, `${what} within 10 s`);
    await sleep(100);
  }
}

describe('Metrics and readiness (in-process gateway over the SoftHSM2 token)', () => {
  let gw: Harness;
  let keyId: string;
  before(async () => {
    gw = await startGateway(integration().hsm, { QKMS_HSM_TIMEOUT_MS: '500' }, { single: 'one process\'s metrics and readiness, and the SQLite writer lock (each replica is scraped on its own)' });
    keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
  });
  after(() => gw.close());

  it('counts KMS requests by operation and outcome, with latency histograms, and never labels a key id or principal', async () => {
    const before = (await scrape(gw.url)).samples;
    for (let i = 0; i < 3; i++) await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
    const missing = '00000000-0000-4000-8000-000000000000';
    await assert.rejects(gw.client.send(new DescribeKeyCommand({ KeyId: missing })), NotFoundException);
    const { text, samples } = await scrape(gw.url);
    const delta = (name: string, labels: Record<string, string>) => total(samples, name, labels) - total(before, name, labels);

    assert.equal(delta('qkms_requests_total', { operation: 'GenerateDataKey', outcome: 'success' }), 3);
    assert.equal(delta('qkms_requests_total', { operation: 'DescribeKey', outcome: 'NotFoundException' }), 1);
    assert.equal(delta('qkms_request_duration_seconds_count', { operation: 'GenerateDataKey' }), 3);
    assert.ok(delta('qkms_request_duration_seconds_sum', { operation: 'GenerateDataKey' }) > 0);
    assert.equal(delta('qkms_request_duration_seconds_bucket', { operation: 'GenerateDataKey', le: '+Inf' }), 3);
    assert.equal(delta('qkms_hsm_call_duration_seconds_count', { method: 'generateWrappedDataKey' }), 3);
    // The probes and scrapes themselves are not KMS requests.
    assert.equal(total(samples, 'qkms_requests_total', { operation: 'unknown' }), 0);
    assert.ok(!text.includes(keyId) && !text.includes(missing), 'no key id in any label');
    assert.ok(!text.includes('arn:aws:iam') && !text.includes(gw.config.adminCredential.accessKeyId), 'no principal in any label');
  });

  it('times PKCS#11 functions (C_WrapKey, C_GenerateKey) and counts their failures by CKR code', async () => {
    const before = (await scrape(gw.url)).samples;
    await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
    const { CiphertextBlob } = await gw.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('metrics') }));
    const tampered = Buffer.from(CiphertextBlob!);
    tampered[tampered.length - 1] ^= 1; // the GCM tag: C_Decrypt refuses it
    await assert.rejects(gw.client.send(new DecryptCommand({ CiphertextBlob: tampered })));
    const { samples } = await scrape(gw.url);
    const delta = (name: string, labels: Record<string, string>) => total(samples, name, labels) - total(before, name, labels);
    for (const fn of ['C_GenerateKey', 'C_WrapKey', 'C_Encrypt', 'C_Decrypt']) {
      assert.ok(delta('qkms_pkcs11_call_duration_seconds_count', { function: fn }) >= 1, `${fn} was timed`);
      assert.equal(delta('qkms_pkcs11_call_duration_seconds_bucket', { function: fn, le: '+Inf' }), delta('qkms_pkcs11_call_duration_seconds_count', { function: fn }));
    }
    const wrapSum = total(samples, 'qkms_pkcs11_call_duration_seconds_sum', { function: 'C_WrapKey' });
    assert.ok(wrapSum > 0 && wrapSum < 60, `C_WrapKey total ${wrapSum} s`);
    const decryptErrors = samples.filter((s) => s.name === 'qkms_pkcs11_call_errors_total' && s.labels.function === 'C_Decrypt');
    assert.ok(decryptErrors.length > 0 && decryptErrors.every((s) => /^CKR_[A-Z_0-9]+$/.test(s.labels.ckr)), JSON.stringify(decryptErrors));
    assert.ok(delta('qkms_pkcs11_call_errors_total', { function: 'C_Decrypt' }) >= 1);
    const failedDecrypt = samples.filter((s) => s.name === 'qkms_requests_total' && s.labels.operation === 'Decrypt' && s.labels.outcome !== 'success');
    assert.ok(failedDecrypt.length > 0, 'the failed Decrypt is counted with its KMS error type');
  });

  it('counts Hsm call errors by HsmError kind, and the request outcome is the KMS error type', async () => {
    const before = (await scrape(gw.url)).samples;
    gw.faults.add({ method: 'generateWrappedDataKey', times: 1, fail: { kind: 'device', ckr: 'CKR_DEVICE_ERROR' } });
    await assert.rejects(gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' })), KeyUnavailableException);
    const { samples } = await scrape(gw.url);
    const delta = (name: string, labels: Record<string, string>) => total(samples, name, labels) - total(before, name, labels);
    assert.equal(delta('qkms_hsm_call_errors_total', { method: 'generateWrappedDataKey', kind: 'device' }), 1);
    assert.equal(delta('qkms_requests_total', { operation: 'GenerateDataKey', outcome: 'KeyUnavailableException' }), 1);
  });

  it('reports the session pool, the token state, the audit records and the Node process metrics', async () => {
    const before = (await scrape(gw.url)).samples;
    await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
    const { samples } = await scrape(gw.url);
    assert.equal(total(samples, 'qkms_pkcs11_sessions'), 4, 'the integration token is opened with 4 sessions');
    const inUse = total(samples, 'qkms_pkcs11_sessions_in_use');
    assert.ok(inUse >= 0 && inUse <= 4);
    assert.equal(total(samples, 'qkms_pkcs11_session_waiters'), 0);
    assert.equal(total(samples, 'qkms_hsm_queued_calls'), 0, 'no HSM thread in this process');
    assert.equal(total(samples, 'qkms_hsm_token_up'), 1);
    // The record of the GenerateDataKey was durable before its answer, so the scrape after it counts it.
    assert.ok(total(samples, 'qkms_audit_records_total') - total(before, 'qkms_audit_records_total') >= 1);
    assert.ok(total(samples, 'qkms_audit_commit_duration_seconds_count') - total(before, 'qkms_audit_commit_duration_seconds_count') >= 1);
    assert.equal(total(samples, 'qkms_audit_write_failures_total'), 0);
    assert.ok(samples.some((s) => s.name === 'process_cpu_user_seconds_total'));
    assert.ok(samples.some((s) => s.name === 'nodejs_eventloop_lag_seconds'));
  });

  it('/ready is 200 with every check passing; /health (liveness) checks only that the process answers', async () => {
    const ready = await probe(gw.url, 'ready');
    assert.equal(ready.status, 200, JSON.stringify(ready.body));
    assert.equal(ready.body.status, 'ready');
    assert.deepEqual(Object.keys(ready.body.checks).sort(), ['startup', 'store', 'token']);
    assert.ok(Object.values(ready.body.checks).every((c) => c.ok));
    assert.match(ready.body.checks.token.detail, /logged in/);
    assert.match(ready.body.checks.startup.detail, /reconciled with the token/);
    assert.deepEqual(ready.body.reasons, []);
    const health = await probe(gw.url, 'health');
    assert.equal(health.status, 200);
    assert.equal(health.body.status, 'ok');
    assert.deepEqual(Object.keys(health.body.checks), ['process']);
    assert.match(health.body.checks.process.detail, /^up \d+ s, serving$/);
    assert.deepEqual(health.body.reasons, []);
  });

  it('a flood of probes costs the token and the disk one check per interval, shared by callers in flight', async () => {
    await sleep(STORE_PROBE_CACHE_MS);
    let writes = 0;
    const probeWrite = gw.deps.keys.probeWrite.bind(gw.deps.keys);
    gw.deps.keys.probeWrite = (ms: number) => (writes++, probeWrite(ms));
    // The next token check fails once: every probe in flight shares that one answer. /health
    // (liveness) asks neither the token nor the store.
    gw.faults.add({ method: 'health', times: 1, delayMs: 100, fail: { kind: 'device', ckr: 'CKR_DEVICE_ERROR' } });
    try {
      const statuses = await Promise.all(Array.from({ length: 20 }, (_, i) => probe(gw.url, i % 2 ? 'ready' : 'health').then((p) => `${i % 2 ? 'ready' : 'health'} ${p.status}`)));
      assert.deepEqual(new Set(statuses), new Set(['ready 503', 'health 200']), 'the 10 /ready shared the one failed check');
      assert.equal(writes, 1, 'one store write for 10 /ready');
    } finally {
      gw.faults.clear();
      gw.deps.keys.probeWrite = probeWrite;
    }
    await sleep(STORE_PROBE_CACHE_MS);
    assert.equal((await probe(gw.url, 'ready')).status, 200);
  });

  it('probe paths in any spelling Express routes to them (/ready/, /HEALTH) are neither audited nor counted as KMS requests', async () => {
    const counts = async () => {
      const { samples } = await scrape(gw.url);
      return [total(samples, 'qkms_requests_total'), total(samples, 'qkms_audit_records_total', { type: 'request' })];
    };
    const before = await counts();
    for (const p of ['/ready/', '/HEALTH', '/Metrics']) assert.equal((await fetch(gw.url + p)).status, 200, p);
    assert.deepEqual(await counts(), before);
  });

  it('/ready is 503 with the reason while another writer holds the store, and 200 once it lets go', async () => {
    await sleep(STORE_PROBE_CACHE_MS + 100);
    // Root ignores file modes, so the store is made unwritable the way a second process would: it
    // holds SQLite's write lock. The probe's write must then fail, not pass on a read.
    const other = new Database(path.join(gw.config.dataDir, 'qkms.db'));
    try {
      other.exec('BEGIN IMMEDIATE');
      const locked = await probe(gw.url, 'ready');
      assert.equal(locked.status, 503, JSON.stringify(locked.body));
      assert.equal(locked.body.status, 'not ready');
      assert.equal(locked.body.checks.store.ok, false);
      assert.equal(locked.body.checks.token.ok, true);
      assert.ok(locked.body.reasons.some((r) => /^store: .*locked/.test(r)), locked.body.reasons.join());
      assert.equal((await probe(gw.url, 'health')).status, 200, 'liveness does not depend on the store');
      other.exec('ROLLBACK');
    } finally {
      other.close();
    }
    await sleep(STORE_PROBE_CACHE_MS + 100);
    assert.equal((await probe(gw.url, 'ready')).status, 200);
  });

  it('/ready is 503 with the reason when the token is down, while /health (liveness) stays 200: a restart would not bring the token back', async () => {
    await sleep(TOKEN_CHECK_EVERY_MS); // no earlier answer to share
    gw.faults.add({ method: 'health', times: 1, fail: { kind: 'device', ckr: 'CKR_DEVICE_REMOVED' } });
    const ready = await probe(gw.url, 'ready');
    assert.equal(ready.status, 503);
    assert.equal(ready.body.checks.token.ok, false);
    assert.ok(ready.body.reasons.some((r) => r.startsWith('token: ') && r.includes('CKR_DEVICE_REMOVED')), ready.body.reasons.join());
    const health = await probe(gw.url, 'health');
    assert.equal(health.status, 200);
    assert.equal(health.body.status, 'ok');
    assert.deepEqual(health.body.reasons, []);
    await sleep(TOKEN_CHECK_EVERY_MS);
    assert.equal((await probe(gw.url, 'ready')).status, 200);
  });
});

/**
 * The same through a real gateway process, in both HSM modes, with faults at the PKCS#11 boundary
 * (QKMS_FAULTS_FILE): with the HSM thread the PKCS#11 figures cross from the thread to /metrics.
 */
for (const thread of ['true', 'false']) describe(`Metrics and readiness of a gateway process, QKMS_HSM_THREAD=${thread}`, function () {
  this.timeout(60000);
  let dir: string;
  let faults: string;
  let gw: ChildGateway;
  let keyId: string;
  const gdk = () => gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
  /** The fault plan re-reads its file on the first call at least 1 s after its last check. */
  const pastFaultFileReread = () => sleep(1200);

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-metrics-'));
    faults = path.join(dir, 'faults.json');
    fs.writeFileSync(faults, '[]');
    gw = await startChildGateway({ QKMS_DATA_DIR: path.join(dir, 'data'), QKMS_FAULTS_FILE: faults, QKMS_HSM_THREAD: thread });
    keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
  });
  after(async () => {
    fs.writeFileSync(faults, '[]');
    assert.equal(await gw.stop(), 0);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('reports PKCS#11 calls and the session pool of the token', async () => {
    for (let i = 0; i < 5; i++) await gdk();
    const samples = await scrapeUntil(
      gw.url,
      (s) => total(s, 'qkms_pkcs11_call_duration_seconds_count', { function: 'C_WrapKey' }) >= 5 && total(s, 'qkms_pkcs11_sessions') > 0,
      'the PKCS#11 figures of 5 GenerateDataKey calls',
    );
    assert.ok(total(samples, 'qkms_pkcs11_call_duration_seconds_count', { function: 'C_WrapKey' }) >= 5);
    assert.ok(total(samples, 'qkms_pkcs11_call_duration_seconds_count', { function: 'C_Login' }) >= 1);
    assert.equal(total(samples, 'qkms_pkcs11_sessions'), 4, 'the softhsm2 profile opens 4 sessions');
    assert.equal(total(samples, 'qkms_hsm_token_up'), 1);
    assert.equal(total(samples, 'qkms_requests_total', { operation: 'GenerateDataKey', outcome: 'success' }), 5);
    assert.equal((await probe(gw.url, 'ready')).status, 200);
  });

  it('a failing token: token_up 0, the CKR counted against the function, /ready 503 with the reason; all back once it heals', async () => {
    // The token fails the call and the probe that checks it (connection.ts).
    fs.writeFileSync(faults, JSON.stringify([{ function: 'C_WrapKey', ckr: 'CKR_DEVICE_ERROR', count: 1 }, { function: 'C_GenerateRandom', ckr: 'CKR_DEVICE_ERROR', count: 1 }]));
    await pastFaultFileReread();
    await assert.rejects(gdk(), KeyUnavailableException);
    const down = await probe(gw.url, 'ready');
    assert.equal(down.status, 503, JSON.stringify(down.body));
    assert.ok(down.body.reasons.some((r) => r.startsWith('token: ')), down.body.reasons.join());
    const { samples } = await scrape(gw.url);
    assert.equal(total(samples, 'qkms_hsm_token_up'), 0);
    assert.equal(total(samples, 'qkms_requests_total', { operation: 'GenerateDataKey', outcome: 'KeyUnavailableException' }), 1);
    assert.equal(total(samples, 'qkms_hsm_call_errors_total', { method: 'generateWrappedDataKey', kind: 'device' }), 1);
    const later = await scrapeUntil(gw.url, (s) => total(s, 'qkms_pkcs11_call_errors_total', { function: 'C_WrapKey' }) > 0, 'the C_WrapKey error');
    assert.equal(total(later, 'qkms_pkcs11_call_errors_total', { function: 'C_WrapKey', ckr: 'CKR_DEVICE_ERROR' }), 1);
    const deadline = Date.now() + 5000;
    while ((await probe(gw.url, 'ready')).status !== 200) {
      assert.ok(Date.now() < deadline, 'ready again within 5 s');
      await sleep(100);
    }
    assert.equal(total((await scrape(gw.url)).samples, 'qkms_hsm_token_up'), 1);
    assert.ok((await gdk()).Plaintext);
  });
});

describe('A gateway process that is still starting', function () {
  this.timeout(60000);
  it('listens at once: /health 200 (alive), /ready 503 "starting", KMS requests a DependencyTimeoutException that the SDK retries until it is ready', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-starting-'));
    const faults = path.join(dir, 'faults.json');
    // A slow start, as a token with many objects gives: indexing the token's objects takes 4 s.
    fs.writeFileSync(faults, JSON.stringify([{ function: 'C_FindObjectsInit', delayMs: 4000, count: 1 }]));
    const { child, output, exited } = spawnGateway({ QKMS_DATA_DIR: path.join(dir, 'data'), QKMS_FAULTS_FILE: faults });
    const clients: KMSClient[] = [];
    try {
      let address: string | undefined;
      while (!(address = listeningAddress(output()))) {
        assert.equal(child.exitCode, null, output());
        await sleep(20);
      }
      const url = `http://${address}`;
      const ready = await probe(url, 'ready');
      assert.equal(ready.status, 503);
      assert.equal(ready.body.status, 'starting');
      assert.equal(ready.body.checks.startup.ok, false);
      assert.match(ready.body.reasons[0], /^startup: /);
      const alive = await probe(url, 'health');
      assert.equal(alive.status, 200, 'a slow start is not a dead process: no startupProbe needed');
      assert.match(alive.body.checks.process.detail, /starting$/);
      const client = (maxAttempts: number) => {
        const c = new KMSClient({ endpoint: url, region: 'us-east-1', credentials: TEST_CREDENTIALS, maxAttempts });
        clients.push(c);
        return c;
      };
      await assert.rejects(client(1).send(new CreateKeyCommand({})), (err: unknown) => {
        assert.ok(err instanceof DependencyTimeoutException, String(err));
        assert.equal(err.$metadata.httpStatusCode, 500);
        assert.match(err.message, /starting/);
        return true;
      });
      assert.ok(!/"message":"ready"/.test(output()), 'still starting when the first request was refused');
      const created = await client(12).send(new CreateKeyCommand({}));
      assert.ok(created.KeyMetadata?.KeyId);
      assert.ok((created.$metadata.attempts ?? 1) > 1, 'the SDK retried until the gateway was ready');
      assert.equal((await probe(url, 'ready')).status, 200);
      assert.equal((await probe(url, 'health')).status, 200);
    } finally {
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
      for (const c of clients) c.destroy();
      const pin = path.join(dir, 'data', 'pin');
      if (fs.existsSync(pin)) registerSecret(fs.readFileSync(pin, 'utf8'));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
