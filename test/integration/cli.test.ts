import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DescribeKeyCommand, ListAliasesCommand, ListKeysCommand, ListResourceTagsCommand } from '@aws-sdk/client-kms';
import { startChildGateway, spawnGateway, type ChildGateway } from '../support/child-gateway';
import { hasStackTrace, qkmsJson, runQkms } from '../support/cli';
import { TEST_CREDENTIALS } from '../support/harness';
import { integration } from '../support/integration-hooks';
import { registerSecret } from '../support/secrets';

const CREDENTIALS_ENV = { QKMS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId, QKMS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey };

/**
 * A proxy to the gateway that drops the connection of one GenerateDataKey after `failAfterMs` (to
 * the client, a non-KMS failure) and forwards everything else, counting the GenerateDataKey calls
 * that arrive after the dropped one.
 */
async function droppingProxy(target: string, failAfterMs: number) {
  const failFrom = Date.now() + failAfterMs;
  let hasDropped = false;
  let sentAfterDrop = 0;
  const server = http.createServer((req, res) => {
    if (req.headers['x-amz-target'] === 'TrentService.GenerateDataKey') {
      if (hasDropped) sentAfterDrop++;
      else if (Date.now() >= failFrom) {
        hasDropped = true;
        req.socket.destroy();
        return;
      }
    }
    const upstream = http.request(new URL(req.url ?? '/', target), { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => req.socket.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    sentAfterDrop: () => sentAfterDrop,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())).finally(() => server.closeAllConnections()),
  };
}

/** Audit records of the data dir, parsed (both modes write them). */
function auditRecords(dataDir: string): Array<Record<string, any>> {
  const dir = path.join(dataDir, 'audit');
  return fs
    .readdirSync(dir)
    .sort()
    .flatMap((f) => fs.readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean))
    .map((l) => JSON.parse(l) as Record<string, any>);
}

describe('qkms CLI', function () {
  this.timeout(120000);
  let dataDir: string;
  let gateway: ChildGateway | undefined;
  const direct = () => ({ ...CREDENTIALS_ENV, QKMS_DATA_DIR: dataDir });

  beforeEach(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-cli-'));
  });
  afterEach(async () => {
    if (gateway) await gateway.stop();
    gateway = undefined;
    if (fs.existsSync(path.join(dataDir, 'pin'))) registerSecret(fs.readFileSync(path.join(dataDir, 'pin'), 'utf8'));
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('direct mode: init, keys and aliases on the HSM and store, then served by a gateway as the SDK sees them, and audited', async () => {
    const init = await qkmsJson(['init'], direct());
    assert.equal(init.dataDir, dataDir);
    assert.equal(init.embedded, true);
    const created = await qkmsJson(['keys', 'create', '--description', 'made directly', '--tag', 'team=payments'], direct());
    const keyId: string = created.KeyId;
    assert.equal(created.KeyState, 'Enabled');
    await qkmsJson(['aliases', 'create', 'alias/cli-direct', keyId], direct());
    const disabled = await qkmsJson(['keys', 'disable', 'alias/cli-direct'], direct());
    assert.equal(disabled.KeyState, 'Disabled');
    const listed = await qkmsJson<Array<{ KeyId: string }>>(['keys', 'list'], direct());
    assert.deepEqual(listed.map((k) => k.KeyId), [keyId]);

    gateway = await startChildGateway({ QKMS_DATA_DIR: dataDir });
    const { KeyMetadata } = await gateway.client.send(new DescribeKeyCommand({ KeyId: 'alias/cli-direct' }));
    assert.equal(KeyMetadata!.KeyId, keyId);
    assert.equal(KeyMetadata!.KeyState, 'Disabled');
    assert.equal(KeyMetadata!.Description, 'made directly');
    const { Tags } = await gateway.client.send(new ListResourceTagsCommand({ KeyId: keyId }));
    assert.deepEqual(Tags, [{ TagKey: 'team', TagValue: 'payments' }]);
    await gateway.stop();
    gateway = undefined;

    // The direct-mode calls are in the same hash chain, as the admin principal, from 'local-cli'.
    const local = auditRecords(dataDir).filter((r) => r.type === 'request' && r.sourceIp === 'local-cli');
    assert.deepEqual(local.map((r) => r.operation).slice(0, 5), ['CreateKey', 'CreateAlias', 'DescribeKey', 'DisableKey', 'DescribeKey']);
    assert.ok(local.every((r) => r.principal === 'arn:aws:iam::111122223333:root' && r.status === 200));
    const verified = await runQkms(['audit', 'verify'], direct());
    assert.equal(verified.code, 0, verified.stderr);
    assert.match(verified.stdout, /^audit trail intact: \d+ records/);

    // A trail that is gone is not intact, for audit verify and for the report alike.
    fs.rmSync(path.join(dataDir, 'audit'), { recursive: true });
    const gone = await runQkms(['audit', 'verify'], direct());
    assert.equal(gone.code, 1, gone.stdout + gone.stderr);
    assert.match(gone.stdout, /AUDIT TRAIL TAMPERED: .*no audit trail/);
    const report = await runQkms(['report', '--out', path.join(dataDir, 'report')], direct());
    assert.equal(report.code, 1, report.stdout + report.stderr);
    // A mistyped data dir is refused, and nothing is created there.
    const typo = path.join(dataDir, 'typo');
    const wrong = await runQkms(['audit', 'verify'], { ...direct(), QKMS_DATA_DIR: typo });
    assert.equal(wrong.code, 2, wrong.stderr);
    assert.equal(fs.existsSync(typo), false);
  });

  it('HTTP mode: every key and alias command is a SigV4-signed KMS call that the SDK then observes', async () => {
    gateway = await startChildGateway({ QKMS_DATA_DIR: dataDir });
    const remote = { ...CREDENTIALS_ENV };
    const at = (...args: string[]) => ['--endpoint', gateway!.url, ...args];
    const keyId: string = (await qkmsJson(at('keys', 'create', '--description', 'over http'), remote)).KeyId;
    const second: string = (await qkmsJson(at('keys', 'create', '--key-spec', 'ECC_NIST_P256', '--key-usage', 'SIGN_VERIFY'), remote)).KeyId;
    const sdkKeys = (await gateway.client.send(new ListKeysCommand({}))).Keys!.map((k) => k.KeyId).sort();
    assert.deepEqual(sdkKeys, [keyId, second].sort());
    assert.ok(auditRecords(dataDir).every((r) => r.sourceIp !== 'local-cli'), 'HTTP mode writes no audit of its own');
    assert.equal((await gateway.client.send(new DescribeKeyCommand({ KeyId: second }))).KeyMetadata!.KeySpec, 'ECC_NIST_P256');

    const third: string = (await qkmsJson(at('keys', 'create'), remote)).KeyId;
    await qkmsJson(at('aliases', 'create', 'alias/app', keyId), remote);
    await qkmsJson(at('aliases', 'update', 'alias/app', third), remote);
    const aliases = await qkmsJson<Array<{ AliasName: string; TargetKeyId: string }>>(at('aliases', 'list', '--key', third), remote);
    assert.deepEqual(aliases.map((a) => [a.AliasName, a.TargetKeyId]), [['alias/app', third]]);
    await qkmsJson(at('aliases', 'delete', 'alias/app'), remote);
    const sdkAliases = (await gateway.client.send(new ListAliasesCommand({}))).Aliases!.map((a) => a.AliasName);
    assert.ok(!sdkAliases.includes('alias/app'));

    await qkmsJson(at('keys', 'disable', keyId), remote);
    assert.equal((await gateway.client.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata!.KeyState, 'Disabled');
    await qkmsJson(at('keys', 'enable', keyId), remote);
    const scheduled = await qkmsJson(at('keys', 'schedule-deletion', keyId, '--days', '7'), remote);
    assert.equal(scheduled.KeyState, 'PendingDeletion');
    assert.equal((await gateway.client.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata!.KeyState, 'PendingDeletion');
    await qkmsJson(at('keys', 'cancel-deletion', keyId), remote);
    assert.equal((await gateway.client.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata!.KeyState, 'Disabled'); // as in KMS

    const text = await runQkms(at('keys', 'describe', keyId), remote);
    assert.equal(text.code, 0);
    assert.match(text.stdout, new RegExp(`^KeyId: ${keyId}$`, 'm'));
    assert.match(text.stdout, /^CreationDate: \d{4}-\d\d-\d\dT/m);
  });

  it('direct mode answers an HSM failure with the KMS error the gateway would send, not KMSInternalException', async () => {
    await qkmsJson(['init'], direct());
    const faults = path.join(dataDir, 'faults.json');
    // The token is down: the call fails, and so does the probe that checks it (connection.ts).
    fs.writeFileSync(faults, JSON.stringify([{ function: 'C_GenerateKey', ckr: 'CKR_DEVICE_ERROR' }, { function: 'C_GenerateRandom', ckr: 'CKR_DEVICE_ERROR' }]));
    const run = await runQkms(['keys', 'create'], { ...direct(), QKMS_FAULTS_FILE: faults });
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /KeyUnavailableException/);
    // The token is down, so its HMAC cannot sign the audit batch: the server error is all the caller gets.
    assert.match(run.stderr, /AUDIT WRITE FAILED/);
    assert.ok(!auditRecords(dataDir).some((r) => r.operation === 'CreateKey' && r.errorCode === 'KeyUnavailableException'));
  });

  it('a wrong secret is refused by the gateway: the KMS error, exit 1, no stack, no secret', async () => {
    gateway = await startChildGateway({ QKMS_DATA_DIR: dataDir });
    const wrong = 'wrong-secret-access-key-000000';
    registerSecret(wrong);
    const run = await runQkms(['--endpoint', gateway.url, 'keys', 'list'], { QKMS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId, QKMS_SECRET_ACCESS_KEY: wrong });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^qkms: (IncorrectSignature|InvalidSignature|UnrecognizedClient|AccessDenied)\w*/);
    assert.ok(!hasStackTrace(run.stderr));
    assert.ok(!(run.stdout + run.stderr).includes(wrong));
  });

  it('the data-dir lock refuses a direct-mode write (and a second gateway) while a gateway runs; after it stops, direct mode works', async () => {
    gateway = await startChildGateway({ QKMS_DATA_DIR: dataDir, ...CREDENTIALS_ENV });
    const keysBefore = (await gateway.client.send(new ListKeysCommand({}))).Keys!.length;

    const refused = await runQkms(['keys', 'create', '--description', 'must not exist'], direct());
    assert.equal(refused.code, 3, refused.stderr);
    assert.match(refused.stderr, /in use by main\.ts \(pid \d+/);
    assert.ok(!hasStackTrace(refused.stderr));
    assert.equal((await gateway.client.send(new ListKeysCommand({}))).Keys!.length, keysBefore);
    const written = auditRecords(dataDir).filter((r) => r.type === 'request');
    assert.ok(written.every((r) => r.sourceIp !== 'local-cli' && r.operation !== 'CreateKey'), 'the refused command wrote no audit record');

    const second = spawnGateway({ QKMS_DATA_DIR: dataDir });
    assert.equal(await second.exited, 3);
    assert.match(second.output(), /in use by/);

    await gateway.stop();
    gateway = undefined;
    const after = await runQkms(['--json', 'keys', 'create', '--description', 'after the gateway stopped'], direct());
    assert.equal(after.code, 0, after.stderr);
  });

  it('bad input: a clear one-line error and a non-zero exit, never a stack trace', async () => {
    const cases: Array<[string[], Record<string, string>, number, RegExp]> = [
      [['keys', 'schedule-deletion', 'x', '--days', 'soon'], direct(), 2, /whole number/],
      [['keys', 'frobnicate'], direct(), 2, /unknown command/],
      [['keys', 'create'], { ...direct(), QKMS_PORT: 'eighty' }, 2, /QKMS_PORT/],
      [['keys', 'describe', 'alias/none'], direct(), 1, /^qkms: NotFoundException: Alias .*alias\/none is not found/m],
      [['keys', 'create', '--key-spec', 'RSA_1'], direct(), 1, /^qkms: ValidationException/m],
      [['--endpoint', 'ftp://x', 'keys', 'list'], direct(), 2, /http:\/\/ or https:\/\//],
      [['--endpoint', 'http://127.0.0.1:9', 'keys', 'list'], direct(), 3, /cannot reach the gateway/],
      [['bench'], direct(), 2, /give --endpoint/],
      [['report'], direct(), 2, /--out/],
    ];
    for (const [args, env, code, message] of cases) {
      const run = await runQkms(args, env);
      assert.equal(run.code, code, `qkms ${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, message, args.join(' '));
      assert.ok(!hasStackTrace(run.stderr), `no stack for ${args.join(' ')}: ${run.stderr}`);
      assert.equal(run.stdout, '', 'errors go to stderr only');
    }
  });

  it('slots shows the slots and tokens of the module without a PIN', async () => {
    const { token } = integration();
    const run = await qkmsJson(['slots', '--module', token.modulePath], { SOFTHSM2_CONF: token.confPath });
    const ours = run.slots.find((s: any) => s.token?.label === token.label);
    assert.ok(ours, `the test token is listed: ${JSON.stringify(run.slots)}`);
    assert.equal(ours.token.isInitialized, true);
    assert.equal(ours.token.isUserPinInitialized, true);
    assert.ok(run.slots.some((s: any) => s.token && !s.token.isInitialized), 'SoftHSM2 offers a free slot too');

    await qkmsJson(['init'], direct());
    const embedded = await runQkms(['slots'], direct());
    assert.equal(embedded.code, 0, embedded.stderr);
    assert.match(embedded.stdout, /token 'qkms'\s+<- QKMS_PKCS11_TOKEN_LABEL/);
  });

  it('bench: a GenerateDataKey load run against the gateway, its throwaway key scheduled for deletion, progress on stderr', async () => {
    gateway = await startChildGateway({ QKMS_DATA_DIR: dataDir });
    const run = await runQkms(['--endpoint', gateway.url, '--json', 'bench', '--duration', '2', '--concurrency', '2'], CREDENTIALS_ENV);
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout);
    assert.equal(result.operation, 'GenerateDataKey');
    assert.ok(result.ok > 0 && result.requestsPerSecond > 0);
    assert.deepEqual(result.errors, {});
    assert.ok(result.latencyMs.p50 > 0 && result.latencyMs.p50 <= result.latencyMs.p99);
    assert.match(run.stderr, /\ds: \d+ ok/);
    const { KeyMetadata } = await gateway.client.send(new DescribeKeyCommand({ KeyId: result.keyId }));
    assert.equal(KeyMetadata!.KeyState, 'PendingDeletion');
    const served = auditRecords(dataDir).filter((r) => r.operation === 'GenerateDataKey' && r.status === 200).length;
    assert.ok(served >= result.ok, 'every counted call reached the gateway');
  });

  it('bench: stops every worker at the first non-KMS error and still schedules its key for deletion', async () => {
    gateway = await startChildGateway({ QKMS_DATA_DIR: dataDir });
    const proxy = await droppingProxy(gateway.url, 1500);
    try {
      const started = Date.now();
      const run = await runQkms(['--endpoint', proxy.url, 'bench', '--duration', '30', '--concurrency', '4'], CREDENTIALS_ENV);
      assert.equal(run.code, 3, run.stderr);
      assert.match(run.stderr, /cannot reach the gateway/);
      assert.ok(Date.now() - started < 15000, 'the command ended at the failure, not after --duration');
      // Until the dropped call's error reaches its worker, the other three may each finish a call and
      // start one more (a loaded CI machine saw 4): a bound of two per worker still shows the run
      // stopped at the failure, where running on would have sent hundreds.
      assert.ok(proxy.sentAfterDrop() <= 8, `the workers stopped at the failure (${proxy.sentAfterDrop()} calls arrived after it)`);
      const keyId = /created key (\S+) for the run/.exec(run.stderr)?.[1];
      assert.ok(keyId, run.stderr);
      assert.match(run.stderr, /scheduled the run's key .* for deletion/);
      const { KeyMetadata } = await gateway.client.send(new DescribeKeyCommand({ KeyId: keyId }));
      assert.equal(KeyMetadata!.KeyState, 'PendingDeletion');
    } finally {
      await proxy.close();
    }
  });
});
