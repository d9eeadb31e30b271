import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { GenerateDataKeyCommand, CreateKeyCommand, KMSClient, ListAliasesCommand } from '@aws-sdk/client-kms';
import { readmeBlocks, type ReadmeBlock } from '../support/readme-blocks';
import { freePort } from '../support/free-port';

const ROOT = path.resolve(__dirname, '../..');
const run = promisify(execFile);
/** The sections whose every block is walked; elsewhere only blocks with a marker are. */
const WALKED = new Set(['Quick start', 'Using it from AWS clients', 'docker-compose']);
const DEV = { accessKeyId: 'AKIAQKMSLOCALDEV0001', secretAccessKey: 'qkms-local-development-only' };
/** Debian bookworm's awscli 2.9.19 and python3-boto3 1.26: older than three KMS additions of 2024 (README). */
const DEBIAN_AWS = '/usr/bin/aws';
const DEBIAN_PYTHON = '/usr/bin/python3';
const NEWER_THAN_DEBIAN_AWS = /rotation-period-in-days|rotate-key-on-demand|list-key-rotations/;


interface Gateway {
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** A gateway process in its own process group (npm start runs sh, then node), stopped with SIGTERM. */
async function startGateway(command: string[], env: Record<string, string>): Promise<Gateway> {
  const port = await freePort();
  const child: ChildProcess = spawn(command[0], command.slice(1), { cwd: ROOT, env: { ...cleanEnv(), QKMS_PORT: String(port), ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const deadline = Date.now() + 120000;
  while (!/"message":"ready"/.test(out)) {
    if (child.exitCode !== null) throw new Error(`${command.join(' ')} exited ${child.exitCode}:\n${out}`);
    if (Date.now() > deadline) throw new Error(`${command.join(' ')} did not get ready:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    stop: async () => {
      if (child.exitCode === null) process.kill(-child.pid!, 'SIGTERM');
      await exited;
    },
  };
}

/** The test process's environment without QKMS_*, SOFTHSM2_CONF (the suite's token) and AWS_* settings. */
function cleanEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(process.env).filter(([k, v]) => v !== undefined && !/^(QKMS_|AWS_)/.test(k) && k !== 'SOFTHSM2_CONF')) as Record<string, string>;
}

describe('README examples, run as written against real gateways', function () {
  this.timeout(240000);
  const blocks = readmeBlocks(path.join(ROOT, 'README.md'));
  const walked = blocks.filter((b) => WALKED.has(b.section) || b.marker !== undefined);
  const find = (predicate: (b: ReadmeBlock) => boolean, what: string): ReadmeBlock => {
    const found = walked.filter((b) => !b.marker?.startsWith('skip:') && predicate(b));
    assert.equal(found.length, 1, `exactly one README block ${what}`);
    return found[0];
  };
  let home: string;
  let gw: Gateway;
  const dataDirs: string[] = [];
  const newDir = (prefix: string) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    dataDirs.push(dir);
    return dir;
  };
  /** What a user's shell has: a HOME of its own (so no ~/.aws of this machine), pyenv still found. */
  const userEnv = (): Record<string, string> => ({
    ...cleanEnv(),
    HOME: home,
    ...(process.env.PYENV_ROOT || fs.existsSync(path.join(os.homedir(), '.pyenv')) ? { PYENV_ROOT: process.env.PYENV_ROOT ?? path.join(os.homedir(), '.pyenv') } : {}),
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_PAGER: '',
    README_TEST_ROOT: ROOT,
  });
  const onPort = (text: string, g: Gateway) => text.replaceAll('127.0.0.1:8080', `127.0.0.1:${g.port}`);
  const bash = (script: string, env: Record<string, string> = {}) =>
    run('bash', ['-e', '-o', 'pipefail', '-c', script], { cwd: newDir('qkms-readme-sh-'), env: { ...userEnv(), ...env }, maxBuffer: 1 << 24 });

  before(async function () {
    home = newDir('qkms-readme-home-');
    // Quick start, as written: `npm start` (SoftHSM2 check, build, then the gateway), only with a
    // data dir and port of its own.
    gw = await startGateway(['npm', 'start'], { QKMS_DATA_DIR: newDir('qkms-readme-data-') });
  });
  after(async () => {
    await gw?.stop();
    for (const dir of dataDirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('every block of the walked sections is run by a test below or says in its marker why not', () => {
    const known = /^(skip: .{20,}|aws-config\b|gateway QKMS_\w+=\w+|fresh data dir\b|seed-file|credentials-file\b|node-line$)/;
    for (const b of walked) {
      assert.ok(['sh', 'ini', 'python', 'ts', 'yaml', 'json'].includes(b.lang), `README line ${b.line}: a ${b.lang || 'plain'} block this test cannot run; mark it <!-- readme-test: skip: why -->`);
      if (b.marker !== undefined) assert.match(b.marker, known, `README line ${b.line}: unknown marker`);
      if (b.lang === 'json' || b.lang === 'yaml' || b.lang === 'ini') assert.ok(b.marker, `README line ${b.line}: a ${b.lang} block needs a marker saying what it is`);
    }
    for (const b of walked.filter((b) => b.marker?.startsWith('skip:'))) console.log(`      not run: README line ${b.line} (${b.section}): ${b.marker}`);
    console.log(`      not walked: ${blocks.length - walked.length} blocks outside ${[...WALKED].join(', ')} without a marker`);
  });

  it('the Node.js block of Quick start puts the documented line (.nvmrc) first on PATH, from the npm registry, with headers for node-gyp', async () => {
    const block = find((b) => b.marker === 'node-line', 'that installs a Node.js line');
    const line = fs.readFileSync(path.join(ROOT, '.nvmrc'), 'utf8').trim();
    assert.match(block.text, new RegExp(`node-line\\.sh --env ${line}\\b`), 'the block installs the line .nvmrc names');
    // From the checkout, as a user runs it; HOME is the test's, so a user's line is installed
    // afresh there (root's goes to /opt/qkms/node, which .ci/run has filled already).
    const { stdout } = await run('bash', ['-e', '-o', 'pipefail', '-c', `${block.text}\nnode -p process.execPath\necho "$npm_config_nodedir"`], { cwd: ROOT, env: userEnv() });
    const [version, execPath, nodedir] = stdout.trim().split('\n');
    assert.match(version, new RegExp(`^v${line}\\.`));
    assert.equal(execPath, path.join(process.getuid?.() === 0 ? '/opt/qkms/node' : path.join(home, '.cache/qkms/node'), line, 'bin/node'));
    assert.ok(fs.existsSync(path.join(nodedir, 'include/node/node_api.h')), 'npm_config_nodedir holds the headers node-gyp compiles against');
  });

  const cliBlock = () => find((b) => b.lang === 'sh' && /aws kms create-key/.test(b.text), 'with the AWS CLI');

  it('the AWS CLI block with the aws on PATH (a current one: 1.45 here)', async function () {
    if (spawnSync('aws', ['kms', 'rotate-key-on-demand', 'help'], { env: userEnv() }).status !== 0) {
      console.log('      skipped: the aws on PATH lacks rotate-key-on-demand (install a current awscli: pip install awscli)');
      this.skip();
    }
    const { stdout } = await bash(onPort(cliBlock().text, gw));
    assert.match(stdout, /"Plaintext": "aGVsbG8="|hello/);
    assert.match(stdout, /"RotationType": "ON_DEMAND"/);
  });

  it("the AWS CLI block with Debian's awscli 2.9.19, without the three lines the README says it lacks", async function () {
    if (!fs.existsSync(DEBIAN_AWS)) this.skip();
    const bin = newDir('qkms-readme-bin-');
    fs.symlinkSync(DEBIAN_AWS, path.join(bin, 'aws'));
    const lines = cliBlock().text.split('\n');
    assert.equal(lines.filter((l) => NEWER_THAN_DEBIAN_AWS.test(l)).length, 3);
    // A gateway of its own: the block makes alias/demo, which exists once per gateway.
    const fresh = await startGateway([process.execPath, 'dist/main.js'], { QKMS_DATA_DIR: newDir('qkms-readme-data-') });
    try {
      const { stdout } = await bash(onPort(lines.filter((l) => !NEWER_THAN_DEBIAN_AWS.test(l)).join('\n'), fresh), { PATH: `${bin}:${process.env.PATH}` });
      assert.match(stdout, /hello/);
    } finally {
      await fresh.stop();
    }
    await assert.rejects(bash('aws kms rotate-key-on-demand --key-id x --endpoint-url ' + gw.url, { PATH: `${bin}:${process.env.PATH}` }), (e: { stderr: string }) => /Invalid choice/i.test(e.stderr), 'and it does lack them');
  });

  it('the endpoint from a profile’s services section, AWS_ENDPOINT_URL_KMS and AWS_ENDPOINT_URL: the block, then boto3 and the JS SDK each way', async () => {
    const ini = find((b) => b.marker?.startsWith('aws-config') === true, 'for ~/.aws/config');
    fs.mkdirSync(path.join(home, '.aws'), { recursive: true });
    fs.writeFileSync(path.join(home, '.aws', 'config'), onPort(ini.text, gw));
    const keyId = (await new KMSClient({ endpoint: gw.url, region: 'us-east-1', credentials: DEV }).send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    const { stdout } = await bash(onPort(find((b) => b.lang === 'sh' && /AWS_ENDPOINT_URL_KMS=/.test(b.text), 'with the endpoint variables').text, gw));
    assert.equal(stdout.split(keyId).length - 1, 3 * 2, 'each of the three commands listed the key (id and ARN)');
    const ways: Array<Record<string, string>> = [{ AWS_PROFILE: 'qkms' }, { AWS_ENDPOINT_URL_KMS: gw.url, ...keys() }, { AWS_ENDPOINT_URL: gw.url, ...keys() }];
    const dir = tsDir();
    fs.writeFileSync(path.join(dir, 'list.ts'), "import { KMSClient, ListKeysCommand } from '@aws-sdk/client-kms';\nnew KMSClient({}).send(new ListKeysCommand({})).then((r) => console.log(JSON.stringify(r.Keys)), (e) => { console.error(e); process.exit(1); });\n");
    for (const way of ways) {
      const py = await run('python3', ['-c', 'import boto3; print(boto3.client("kms").list_keys()["Keys"])'], { env: { ...userEnv(), ...way } });
      assert.match(py.stdout, new RegExp(keyId), `boto3 with ${Object.keys(way)[0]}`);
      const js = await run(process.execPath, ['--require', require.resolve('tsx/cjs'), 'list.ts'], { cwd: dir, env: { ...userEnv(), ...way } });
      assert.match(js.stdout, new RegExp(keyId), `the JS SDK with ${Object.keys(way)[0]}`);
    }
    function keys() {
      return { AWS_ACCESS_KEY_ID: DEV.accessKeyId, AWS_SECRET_ACCESS_KEY: DEV.secretAccessKey, AWS_DEFAULT_REGION: 'us-east-1', AWS_REGION: 'us-east-1' };
    }
  });

  const pythonBlock = () => find((b) => b.lang === 'python', 'in Python');

  it('the boto3 block with the python3 on PATH (boto3 1.43 here)', async function () {
    if (spawnSync('python3', ['-c', 'import boto3; boto3.client("kms", region_name="us-east-1").rotate_key_on_demand'], { env: userEnv() }).status !== 0) {
      console.log('      skipped: the python3 on PATH has no boto3 with rotate_key_on_demand (pip install boto3)');
      this.skip();
    }
    await run('python3', ['-c', onPort(pythonBlock().text, gw)], { env: userEnv() });
  });

  it("the boto3 block with Debian's python3-boto3 1.26 stops at rotate_key_on_demand, as the README says", async function () {
    if (spawnSync(DEBIAN_PYTHON, ['-c', 'import boto3']).status !== 0) this.skip();
    // A gateway of its own: the block makes alias/boto-demo, which exists once per gateway.
    const fresh = await startGateway([process.execPath, 'dist/main.js'], { QKMS_DATA_DIR: newDir('qkms-readme-data-') });
    try {
      await assert.rejects(run(DEBIAN_PYTHON, ['-c', onPort(pythonBlock().text, fresh)], { env: userEnv() }), (e: { stderr: string }) =>
        /AttributeError: 'KMS' object has no attribute 'rotate_key_on_demand'/.test(e.stderr),
      );
    } finally {
      await fresh.stop();
    }
  });

  /** A directory for TypeScript files: CommonJS (no package.json), the repository's node_modules. */
  function tsDir(): string {
    const dir = newDir('qkms-readme-ts-');
    fs.symlinkSync(fs.realpathSync(path.join(ROOT, 'node_modules')), path.join(dir, 'node_modules'));
    return dir;
  }

  it('the TypeScript snippets run as .ts files with tsx (CommonJS) and type-check with tsc --strict', async () => {
    const snippets = walked.filter((b) => b.lang === 'ts');
    assert.equal(snippets.length, 2);
    const dir = tsDir();
    const files = snippets.map((b, i) => {
      const file = path.join(dir, `demo${i}.ts`);
      fs.writeFileSync(file, b.text);
      return file;
    });
    await run(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '--noEmit', '--strict', '--skipLibCheck', '--module', 'commonjs', '--target', 'es2022', '--moduleResolution', 'node', '--types', 'node', ...files], { cwd: dir });
    for (const [i, b] of snippets.entries()) {
      const env = /^gateway (QKMS_\w+)=(\w+)$/.exec(b.marker ?? '');
      const target = env ? await startGateway([process.execPath, 'dist/main.js'], { QKMS_DATA_DIR: newDir('qkms-readme-data-'), [env[1]]: env[2] }) : gw;
      try {
        fs.writeFileSync(files[i], onPort(b.text, target));
        const { stdout } = await run(process.execPath, ['--require', require.resolve('tsx/cjs'), files[i]], { cwd: dir, env: userEnv() });
        assert.match(stdout, /^(true|my secret)\n$/, `README line ${b.line}`);
      } finally {
        if (target !== gw) await target.stop();
      }
    }
  });

  it("the seed page's request: a seed file, npm start, and curl's SigV4 answer in the shape the README shows", async () => {
    const b = find((x) => x.marker?.startsWith('fresh data dir') === true, 'with the seed page request');
    const port = await freePort();
    // `npm start` in the block: node dist/main.js (what npm start runs after its build, done in
    // before()) in the background, in the block's directory, on a fresh data dir, until ready.
    const shim = `npm() { [ "$1" = start ] || { echo "npm $*: not expected here" >&2; return 1; }
      QKMS_DATA_DIR="$PWD/data" QKMS_PORT=${port} node "$README_TEST_ROOT/dist/main.js" > gateway.log 2>&1 & echo $! > gateway.pid
      for i in $(seq 600); do grep -q '"message":"ready"' gateway.log && return 0; kill -0 $(cat gateway.pid) 2>/dev/null || { cat gateway.log >&2; return 1; }; sleep 0.1; done; return 1; }
      trap 'kill $(cat gateway.pid) 2>/dev/null' EXIT\n`;
    const { stdout } = await bash(shim + b.text.replaceAll('127.0.0.1:8080', `127.0.0.1:${port}`));
    const shown = JSON.parse(/^# (\{.*\})$/m.exec(b.text)![1]) as Record<string, string>;
    const answer = JSON.parse(stdout) as Record<string, string>;
    assert.deepEqual(Object.keys(answer).sort(), Object.keys(shown).sort());
    assert.equal(answer.KeyId, shown.KeyId);
    assert.equal(Buffer.from(answer.Plaintext, 'base64').length, 32);
  });

  it('the seed file example starts a gateway that has its keys and aliases', async () => {
    const b = find((x) => x.marker === 'seed-file', 'of a seed file');
    const file = path.join(newDir('qkms-readme-seed-'), 'seed.yaml');
    fs.writeFileSync(file, b.text);
    const seeded = await startGateway([process.execPath, 'dist/main.js'], { QKMS_DATA_DIR: newDir('qkms-readme-data-'), QKMS_SEED_FILE: file });
    try {
      const aliases = await new KMSClient({ endpoint: seeded.url, region: 'us-east-1', credentials: DEV }).send(new ListAliasesCommand({}));
      const names = Object.fromEntries(aliases.Aliases!.map((a) => [a.AliasName, a.TargetKeyId]));
      assert.deepEqual([names['alias/ci-data'], names['alias/ci-signing']], ['1234abcd-12ab-34cd-56ef-1234567890ab', '5678abcd-12ab-34cd-56ef-1234567890ab']);
    } finally {
      await seeded.stop();
    }
  });

  it('the credentials file example starts a gateway on which alice may make data keys and nothing else', async () => {
    const b = find((x) => x.marker?.startsWith('credentials-file') === true, 'of a credentials file');
    const file = path.join(newDir('qkms-readme-cred-'), 'credentials.json');
    fs.writeFileSync(file, b.text);
    const withFile = await startGateway([process.execPath, 'dist/main.js'], { QKMS_DATA_DIR: newDir('qkms-readme-data-'), QKMS_CREDENTIALS_FILE: file });
    try {
      const entry = (JSON.parse(b.text) as { principals: Array<{ accessKeyId: string; secretAccessKey: string }> }).principals[0];
      const admin = new KMSClient({ endpoint: withFile.url, region: 'us-east-1', credentials: DEV });
      const alice = new KMSClient({ endpoint: withFile.url, region: 'us-east-1', credentials: { accessKeyId: entry.accessKeyId, secretAccessKey: entry.secretAccessKey }, maxAttempts: 1 });
      const keyId = (await admin.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      const dk = await alice.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
      assert.equal(dk.Plaintext!.length, 32);
      await assert.rejects(alice.send(new CreateKeyCommand({})), (e: Error) => e.name === 'AccessDeniedException');
    } finally {
      await withFile.stop();
    }
  });
});
