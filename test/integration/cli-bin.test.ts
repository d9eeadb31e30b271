import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateAliasCommand, CreateKeyCommand, ListKeysCommand } from '@aws-sdk/client-kms';
import { startChildGateway, type ChildGateway } from '../support/child-gateway';
import { cliEnv, collect, hasStackTrace, runQkms } from '../support/cli';
import { TEST_CREDENTIALS } from '../support/harness';
import { registerSecret } from '../support/secrets';

const ROOT = path.resolve(__dirname, '../..');
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const DEV = { accessKeyId: 'AKIAQKMSLOCALDEV0001', secretAccessKey: 'qkms-local-development-only' };
const AWS_TEST_KEYS = { AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey };
const NOTHING_LISTENS = 'http://127.0.0.1:9';

function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A shared AWS credentials file and config file, as `aws configure --profile` writes them. */
function awsProfileFiles(dir: string, profile: string, region: string): Record<string, string> {
  const credentials = path.join(dir, 'credentials');
  const config = path.join(dir, 'config');
  fs.writeFileSync(credentials, `[${profile}]\naws_access_key_id = ${TEST_CREDENTIALS.accessKeyId}\naws_secret_access_key = ${TEST_CREDENTIALS.secretAccessKey}\n`);
  fs.writeFileSync(config, `[profile ${profile}]\nregion = ${region}\n`);
  return { AWS_SHARED_CREDENTIALS_FILE: credentials, AWS_CONFIG_FILE: config };
}

describe('qkms as an installed command: bin, endpoint, credentials, output', function () {
  this.timeout(120000);
  let dataDir: string;
  let gateway: ChildGateway;
  let keyId: string;

  before(async () => {
    dataDir = tempDir('qkms-cli-bin-');
    gateway = await startChildGateway({ QKMS_DATA_DIR: dataDir });
    keyId = (await gateway.client.send(new CreateKeyCommand({ Description: 'listed with its aliases' }))).KeyMetadata!.KeyId!;
    await gateway.client.send(new CreateAliasCommand({ AliasName: 'alias/cli-bin-a', TargetKeyId: keyId }));
    await gateway.client.send(new CreateAliasCommand({ AliasName: 'alias/cli-bin-b', TargetKeyId: keyId }));
  });
  after(async () => {
    await gateway?.stop();
    if (fs.existsSync(path.join(dataDir, 'pin'))) registerSecret(fs.readFileSync(path.join(dataDir, 'pin'), 'utf8'));
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('--version prints the package version, through bin/qkms.js and through `npx qkms` in the checkout', async () => {
    const direct = await runQkms(['--version']);
    assert.equal(direct.code, 0, direct.stderr);
    assert.equal(direct.stdout, `${VERSION}\n`);
    const npx = await collect(spawn('npx', ['--offline', '--no-install', 'qkms', '--version'], { cwd: ROOT, env: cliEnv({}), stdio: ['ignore', 'pipe', 'pipe'] }));
    assert.equal(npx.code, 0, npx.stderr);
    assert.equal(npx.stdout, `${VERSION}\n`);
  });

  it('`npm link` installs a qkms command that works from any directory', async () => {
    const prefix = tempDir('qkms-npm-prefix-');
    try {
      const link = await collect(spawn('npm', ['link', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: ROOT, env: cliEnv({ npm_config_prefix: prefix }), stdio: ['ignore', 'pipe', 'pipe'] }));
      assert.equal(link.code, 0, link.stderr);
      const linked = path.join(prefix, 'bin', 'qkms');
      const run = await collect(spawn(linked, ['--output', 'json', 'keys', 'list'], { cwd: os.tmpdir(), env: cliEnv({ QKMS_ENDPOINT: gateway.url, ...AWS_TEST_KEYS }), stdio: ['ignore', 'pipe', 'pipe'] }));
      assert.equal(run.code, 0, run.stderr);
      assert.deepEqual((JSON.parse(run.stdout) as Array<{ KeyId: string }>).map((k) => k.KeyId), [keyId]);
    } finally {
      fs.rmSync(prefix, { recursive: true, force: true });
    }
  });

  it('the endpoint comes from --endpoint, else QKMS_ENDPOINT, else AWS_ENDPOINT_URL_KMS, else AWS_ENDPOINT_URL', async () => {
    const cases: Array<[string[], Record<string, string>]> = [
      [['--endpoint', gateway.url], { QKMS_ENDPOINT: NOTHING_LISTENS }],
      [[], { QKMS_ENDPOINT: gateway.url, AWS_ENDPOINT_URL_KMS: NOTHING_LISTENS, AWS_ENDPOINT_URL: NOTHING_LISTENS }],
      [[], { AWS_ENDPOINT_URL_KMS: gateway.url, AWS_ENDPOINT_URL: NOTHING_LISTENS }],
      [[], { AWS_ENDPOINT_URL: gateway.url }],
    ];
    for (const [flags, env] of cases) {
      const run = await runQkms([...flags, '--json', 'keys', 'describe', 'alias/cli-bin-a'], { ...env, ...AWS_TEST_KEYS });
      assert.equal(run.code, 0, `${flags.join(' ')} ${JSON.stringify(env)}: ${run.stderr}`);
      assert.equal(JSON.parse(run.stdout).KeyId, keyId);
    }
    // A dead endpoint is named with where it came from.
    const dead = await runQkms(['keys', 'list'], { AWS_ENDPOINT_URL: NOTHING_LISTENS, ...AWS_TEST_KEYS });
    assert.equal(dead.code, 3, dead.stderr);
    assert.match(dead.stderr, /^qkms: cannot reach the gateway at http:\/\/127\.0\.0\.1:9 \(from AWS_ENDPOINT_URL\)/);
    const bad = await runQkms(['keys', 'list'], { QKMS_ENDPOINT: 'not a url' });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /^qkms: QKMS_ENDPOINT must be a URL/);
  });

  it('--direct works on the data dir though an endpoint variable is set, and direct-only commands ignore the variables', async () => {
    const dir = tempDir('qkms-cli-direct-');
    try {
      const env = { QKMS_DATA_DIR: dir, QKMS_ENDPOINT: gateway.url, AWS_ENDPOINT_URL: gateway.url };
      const init = await runQkms(['--json', 'init'], env);
      assert.equal(init.code, 0, init.stderr);
      const created = await runQkms(['--direct', '--json', 'keys', 'create', '--description', 'on the data dir'], env);
      assert.equal(created.code, 0, created.stderr);
      const madeHere = JSON.parse(created.stdout).KeyId as string;
      const sdkKeys = (await gateway.client.send(new ListKeysCommand({}))).Keys!.map((k) => k.KeyId);
      assert.ok(!sdkKeys.includes(madeHere), 'the key was made in the data dir, not at the endpoint');
      const both = await runQkms(['--direct', '--endpoint', gateway.url, 'keys', 'list'], env);
      assert.equal(both.code, 2);
      assert.match(both.stderr, /--direct and --endpoint exclude each other/);
    } finally {
      if (fs.existsSync(path.join(dir, 'pin'))) registerSecret(fs.readFileSync(path.join(dir, 'pin'), 'utf8'));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('credentials from the AWS default chain: AWS_ACCESS_KEY_ID, and AWS_PROFILE with its region from ~/.aws/config', async () => {
    const fromEnv = await runQkms(['--endpoint', gateway.url, 'keys', 'list'], AWS_TEST_KEYS);
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    assert.doesNotMatch(fromEnv.stderr, /development credential/);

    const dir = tempDir('qkms-aws-profile-');
    try {
      const files = awsProfileFiles(dir, 'qkms-test', 'eu-west-1');
      // The profile's region is used: this gateway serves us-east-1 only, and says so.
      const wrongRegion = await runQkms(['--endpoint', gateway.url, 'keys', 'list'], { ...files, AWS_PROFILE: 'qkms-test' });
      assert.equal(wrongRegion.code, 1, wrongRegion.stderr);
      assert.match(wrongRegion.stderr, /eu-west-1/);
      assert.match(wrongRegion.stderr, /signed with AWS_PROFILE=qkms-test, region eu-west-1/);
      const run = await runQkms(['--endpoint', gateway.url, '--region', 'us-east-1', 'keys', 'list'], { ...files, AWS_PROFILE: 'qkms-test' });
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, new RegExp(keyId));
      const qkmsRegion = await runQkms(['--endpoint', gateway.url, 'keys', 'list'], { ...files, AWS_PROFILE: 'qkms-test', QKMS_REGION: 'us-east-1' });
      assert.equal(qkmsRegion.code, 0, qkmsRegion.stderr);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('never falls back silently: a configured but unusable AWS profile is an error, even on loopback', async () => {
    const run = await runQkms(['--endpoint', gateway.url, 'keys', 'list'], { AWS_PROFILE: 'no-such-profile' });
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /^qkms: no credential for http:\/\/127\.0\.0\.1:\d+ \(from AWS_PROFILE=no-such-profile\)/);
    assert.doesNotMatch(run.stderr, /development credential /);
    assert.ok(!hasStackTrace(run.stderr));
    const remote = await runQkms(['--endpoint', 'http://qkms.invalid:8080', 'keys', 'list']);
    assert.equal(remote.code, 2, remote.stderr);
    assert.match(remote.stderr, /^qkms: no credential for http:\/\/qkms\.invalid:8080 \(none is configured\)/);
  });

  it('with nothing configured and a loopback endpoint, the development credential is used and said on stderr', async () => {
    const run = await runQkms(['--endpoint', gateway.url, 'keys', 'list']);
    // This gateway has its own admin credential, so it refuses the development one: the error names it.
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /^qkms: signing with the public development credential AKIAQKMSLOCALDEV0001 \(nothing else is configured and http:\/\/127\.0\.0\.1:\d+ is loopback\)/m);
    assert.match(run.stderr, /^qkms: UnrecognizedClientException.*\(signed with the development credential, region us-east-1\)$/m);
  });

  it('the development credential reaches a development gateway, implicitly on loopback and with --dev-credential', async () => {
    const dir = tempDir('qkms-cli-dev-');
    const dev = await startChildGateway({ QKMS_DATA_DIR: dir, QKMS_ACCESS_KEY_ID: DEV.accessKeyId, QKMS_SECRET_ACCESS_KEY: DEV.secretAccessKey });
    try {
      const implicit = await runQkms(['--endpoint', dev.url, 'keys', 'create', '--description', 'dev']);
      assert.equal(implicit.code, 0, implicit.stderr);
      assert.match(implicit.stderr, /signing with the public development credential/);
      // Explicitly asked: used even though AWS credentials are configured, and said too.
      const asked = await runQkms(['--endpoint', dev.url, '--dev-credential', 'keys', 'list'], AWS_TEST_KEYS);
      assert.equal(asked.code, 0, asked.stderr);
      assert.match(asked.stderr, /development credential AKIAQKMSLOCALDEV0001 \(--dev-credential\)/);
      // QKMS_ACCESS_KEY_ID is explicit: no notice.
      const configured = await runQkms(['--endpoint', dev.url, 'keys', 'list'], { QKMS_ACCESS_KEY_ID: DEV.accessKeyId, QKMS_SECRET_ACCESS_KEY: DEV.secretAccessKey });
      assert.equal(configured.code, 0, configured.stderr);
      assert.equal(configured.stderr, '');
    } finally {
      await dev.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--output table (the default) lists keys under a header with an alias column; --output json is --json', async () => {
    const env = { QKMS_ENDPOINT: gateway.url, ...AWS_TEST_KEYS };
    const table = await runQkms(['keys', 'list'], env);
    assert.equal(table.code, 0, table.stderr);
    const [header, row, ...rest] = table.stdout.trimEnd().split('\n');
    assert.match(header, /^KEY ID\s+ALIASES\s+STATE\s+SPEC\s+USAGE\s+DESCRIPTION$/);
    assert.deepEqual(rest, []);
    assert.deepEqual(row.split(/\s{2,}/), [keyId, 'alias/cli-bin-a,alias/cli-bin-b', 'Enabled', 'SYMMETRIC_DEFAULT', 'ENCRYPT_DECRYPT', 'listed with its aliases']);
    assert.equal(row.indexOf('alias/'), header.indexOf('ALIASES'), 'columns line up under their header');
    const explicitTable = await runQkms(['--output', 'table', 'keys', 'list'], env);
    assert.equal(explicitTable.stdout, table.stdout);

    const json = await runQkms(['--output', 'json', 'keys', 'list'], env);
    const legacy = await runQkms(['--json', 'keys', 'list'], env);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), JSON.parse(legacy.stdout));
    assert.deepEqual(JSON.parse(json.stdout)[0].Aliases, ['alias/cli-bin-a', 'alias/cli-bin-b']);

    const aliases = await runQkms(['-o', 'table', 'aliases', 'list', '--key', keyId], env);
    assert.equal(aliases.code, 0, aliases.stderr);
    assert.deepEqual(aliases.stdout.trimEnd().split('\n').map((l) => l.split(/\s{2,}/)), [['ALIAS', 'TARGET KEY ID'], ['alias/cli-bin-a', keyId], ['alias/cli-bin-b', keyId]]);

    const wrong = await runQkms(['--output', 'yaml', 'keys', 'list'], env);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /Allowed choices are table, json/);
  });
});
