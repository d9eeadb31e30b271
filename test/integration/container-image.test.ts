import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ignore from '@balena/dockerignore';
import YAML from 'yaml';
import { supportedNodeLines } from '../../src/runtime';
import { DOCKER_COMPOSE, skipWithout } from '../support/debian-tools';
import { TEST_CREDENTIALS } from '../support/harness';
import { integration } from '../support/integration-hooks';
import { recordLog, registerSecret } from '../support/secrets';

const ROOT = path.resolve(__dirname, '../..');

/**
 * No container engine runs here, so softhsm/Dockerfile is never built in this suite. What can be
 * checked without one is: the build context .dockerignore leaves (computed with
 * @balena/dockerignore, Docker's matching rules), the stages' users, commands and paths against
 * docker-compose.yml and deploy/kubernetes, and the images' environment, entrypoint and
 * HEALTHCHECK run as written: in a network namespace of their own, where the gateway listens on
 * 127.0.0.1:8080 as in a container, from the sources (`dist/main.js` is their build).
 */
interface Instruction {
  keyword: string;
  args: string;
}

interface Stage {
  name: string;
  from: string;
  instructions: Instruction[];
}

function parseDockerfile(text: string): Stage[] {
  const lines = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const stages: Stage[] = [];
  const globalArgs: Record<string, string> = {}; // ARG before the first FROM: usable in FROM lines only
  for (const line of lines) {
    const [, keyword, args] = /^(\w+)\s+(.*)$/.exec(line)!;
    if (keyword === 'ARG' && stages.length === 0) {
      const [, name, value] = /^(\w+)=(\S+)$/.exec(args)!;
      globalArgs[name] = value;
    } else if (keyword === 'FROM') {
      const [, from, name] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)!;
      stages.push({ name, from: from.replace(/\$\{(\w+)\}/g, (_, arg: string) => globalArgs[arg]), instructions: [] });
    } else {
      stages.at(-1)!.instructions.push({ keyword, args: args.replace(/\s+/g, ' ') });
    }
  }
  return stages;
}

/** An instruction's last value in a stage, following FROM <earlier stage> as Docker does. */
function effective(stages: Stage[], stage: Stage, keyword: string): string | undefined {
  const own = stage.instructions.filter((i) => i.keyword === keyword).at(-1)?.args;
  if (own !== undefined) return own;
  // An ENTRYPOINT clears the CMD it inherits.
  if (keyword === 'CMD' && stage.instructions.some((i) => i.keyword === 'ENTRYPOINT')) return undefined;
  const base = stages.find((s) => s.name === stage.from);
  return base && effective(stages, base, keyword);
}

function environment(stages: Stage[], stage: Stage): Record<string, string> {
  const base = stages.find((s) => s.name === stage.from);
  const env = base ? environment(stages, base) : {};
  for (const i of stage.instructions.filter((x) => x.keyword === 'ENV')) {
    for (const pair of i.args.split(' ')) {
      const [k, v] = pair.split(/=(.*)/s);
      env[k] = v;
    }
  }
  return env;
}

const execForm = (args: string) => JSON.parse(args) as string[];

/** What `docker build` would send: every file of the working copy, and what a used one holds besides. */
function candidateFiles(): string[] {
  const tracked = execFileSync('git', ['ls-files'], { cwd: ROOT, encoding: 'utf8' }).trim().split('\n');
  const onDisk: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(ROOT, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(p);
      else onDisk.push(p); // a symlink (node_modules in a worktree) is sent as one entry, not followed
    }
  };
  walk('');
  // A used checkout: `npm start`'s embedded token, store and audit trail, a build, installed
  // modules, PIN and credential files, test and benchmark output.
  const used = [
    'data/pin', 'data/tokens/2b7c1e0a-0000-0000-0000-000000000000/token.object', 'data/qkms.sqlite', 'data/audit/audit-00000001.jsonl', 'data/softhsm2.conf',
    'node_modules/pkcs11js/package.json', 'src/node_modules/x/index.js', 'console/node_modules/x/index.js', 'dist/main.js', 'dist/console/index.html',
    '.git/config', '.git/objects/ab/cdef', 'hsm.pin', 'src/hsm.pin', 'hsm-pin.txt', '.env', 'qkms.env', 'secrets/qkms.env',
    'test/fixtures/x.json', '.bench/run.json', 'coverage/lcov.info', 'npm-debug.log', 'tokens/x/token.object',
  ];
  return [...new Set([...tracked, ...onDisk, ...used])];
}

describe('Container image (softhsm/Dockerfile, .dockerignore)', function () {
  this.timeout(90000);
  const stages = parseDockerfile(fs.readFileSync(path.join(ROOT, 'softhsm/Dockerfile'), 'utf8'));
  const stage = (name: string) => stages.find((s) => s.name === name)!;

  it('sends a build context without data/, tokens, PINs, env files, node_modules, dist, .git or tests, and with every file the Dockerfile copies', () => {
    const rules = ignore().add(fs.readFileSync(path.join(ROOT, '.dockerignore'), 'utf8'));
    const context = candidateFiles().filter((f) => !rules.ignores(f));
    const forbidden = /(^|\/)(data|tokens|node_modules|dist|\.git|test|coverage|\.bench)(\/|$)|\.pin$|pin\.txt$|(^|\/)[^/]*\.env$|\.log$|\.sqlite/;
    assert.deepEqual(context.filter((f) => forbidden.test(f) || f === 'node_modules'), []);
    const copied = stages.flatMap((s) => s.instructions.filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from')).flatMap((i) => i.args.split(' ').slice(0, -1)));
    assert.ok(copied.includes('src') && copied.includes('package-lock.json'));
    const tracked = execFileSync('git', ['ls-files', ...copied], { cwd: ROOT, encoding: 'utf8' }).trim().split('\n');
    assert.ok(tracked.length > 200);
    assert.deepEqual(tracked.filter((f) => !context.includes(f)), [], 'copied by the Dockerfile but left out of the context');
    assert.deepEqual(context.filter((f) => !tracked.includes(f)), [], 'in the context though the Dockerfile copies nothing of it');
  });

  it('builds on the documented Node.js line (.nvmrc), one that package.json\'s engines names and .ci/run tests', () => {
    const line = fs.readFileSync(path.join(ROOT, '.nvmrc'), 'utf8').trim();
    assert.deepEqual(stages.filter((s) => s.from.startsWith('node:')).map((s) => s.from), [`node:${line}-bookworm-slim`, `node:${line}-bookworm-slim`]);
    assert.ok(supportedNodeLines(path.join(ROOT, 'package.json')).includes(Number(line)), `.nvmrc's line ${line} is not in package.json's engines`);
  });

  it('runs both images as uid 1000 (the Deployment\'s), the softhsm one by default, with `node dist/main.js` in /app as the Deployment does', () => {
    assert.deepEqual(stages.map((s) => s.name), ['build', 'gateway', 'softhsm']);
    const deployment = YAML.parse(fs.readFileSync(path.join(ROOT, 'deploy/kubernetes/deployment.yaml'), 'utf8'));
    const pod = deployment.spec.template.spec;
    const container = pod.containers.find((c: { name: string }) => c.name === 'qkms');
    for (const name of ['gateway', 'softhsm']) {
      assert.equal(effective(stages, stage(name), 'USER'), `${pod.securityContext.runAsUser}:${pod.securityContext.runAsGroup}`);
      assert.equal(effective(stages, stage(name), 'WORKDIR'), '/app');
      assert.deepEqual(execForm(effective(stages, stage(name), 'CMD')!), container.command);
    }
    assert.equal(pod.securityContext.runAsUser, 1000);
    assert.deepEqual(execForm(effective(stages, stage('softhsm'), 'ENTRYPOINT')!), ['qkms-init-token']);
    // dist/main.js is src/main.ts built (tsconfig.build.json: src -> dist).
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(ROOT, 'tsconfig.build.json'), 'utf8')).compilerOptions, { rootDir: 'src', outDir: 'dist' });
    // docker-compose.yml builds without a target: the last stage.
    assert.equal(YAML.parse(fs.readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8')).services.qkms.build.target, undefined);
  });

  it('bakes no HSM client into the gateway image: the module is under /opt/hsm, where the Deployment mounts it', () => {
    const gateway = stage('gateway');
    assert.doesNotMatch(gateway.instructions.map((i) => i.args).join('\n'), /softhsm/i);
    const module = environment(stages, gateway).QKMS_PKCS11_MODULE;
    assert.match(module, /^\/opt\/hsm\//);
    const pod = YAML.parse(fs.readFileSync(path.join(ROOT, 'deploy/kubernetes/deployment.yaml'), 'utf8')).spec.template.spec;
    const mount = pod.containers[0].volumeMounts.find((m: { name: string }) => m.name === 'hsm-client');
    assert.deepEqual([mount.mountPath, mount.readOnly], ['/opt/hsm', true]);
    const configMap = YAML.parse(fs.readFileSync(path.join(ROOT, 'deploy/kubernetes/configmap.yaml'), 'utf8'));
    assert.equal(configMap.data.QKMS_PKCS11_MODULE, module);
    assert.equal(environment(stages, stage('softhsm')).QKMS_PKCS11_MODULE, '/usr/lib/softhsm/libsofthsm2.so');
  });

  it('has the HEALTHCHECK docker-compose.yml runs, for the gateway and for each replica', function () {
    skipWithout(this, DOCKER_COMPOSE); // npm test installs it when root (scripts/ensure-test-tools.sh)
    const healthcheck = effective(stages, stage('softhsm'), 'HEALTHCHECK')!;
    assert.equal(effective(stages, stage('gateway'), 'HEALTHCHECK'), healthcheck);
    const [, options, command] = /^(.*?)\s*CMD (\[.*\])$/.exec(healthcheck)!;
    // The compose file needs the credentials scripts/compose-env.sh writes (README "docker-compose").
    const envDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-image-compose-'));
    let compose: { services: Record<string, { healthcheck: { test: string[]; interval: string; timeout: string; start_period: string; retries: number } }> };
    try {
      execFileSync('bash', [path.join(ROOT, 'scripts/compose-env.sh'), path.join(envDir, '.env')], { stdio: 'pipe' });
      const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('QKMS_')));
      compose = YAML.parse(execFileSync('docker-compose', ['--env-file', path.join(envDir, '.env'), '--profile', 'replicated', 'config'], { cwd: ROOT, encoding: 'utf8', env, stdio: 'pipe' }));
    } finally {
      fs.rmSync(envDir, { recursive: true, force: true });
    }
    for (const service of ['qkms', 'qkms-a', 'qkms-b']) {
      const check = compose.services[service].healthcheck;
      assert.deepEqual(check.test, ['CMD', ...execForm(command)], service);
      assert.equal(options, `--interval=${check.interval} --timeout=${check.timeout} --start-period=${check.start_period} --retries=${check.retries}`);
    }
  });

  describe('the images run as written (entrypoint, environment, HEALTHCHECK; gateway from the sources)', () => {
    let dir: string;
    before(function () {
      const probe = spawnSync('unshare', ['-rn', 'sh', '-c', 'ip link set lo up'], { encoding: 'utf8' });
      if (probe.status !== 0) this.skip(); // no unprivileged user and network namespaces here: nothing is run (util-linux unshare, iproute2 ip)
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-image-'));
    });
    after(() => dir && fs.rmSync(dir, { recursive: true, force: true }));

    const healthcheckArgv = () => execForm(/CMD (\[.*\])$/.exec(effective(stages, stage('gateway'), 'HEALTHCHECK')!)![1]);

    it('softhsm: the entrypoint makes the token and its PIN file (0600) on the volume, the gateway becomes healthy, and unhealthy once stopped', async () => {
      const root = path.join(dir, 'softhsm');
      const env = rebase(environment(stages, stage('softhsm')), root);
      const conf = fs.readFileSync(path.join(ROOT, 'softhsm/softhsm2.conf'), 'utf8').replace(/^(directories\.tokendir = )(\/.*)$/m, (_m, k: string, p: string) => k + root + p);
      fs.mkdirSync(path.dirname(env.SOFTHSM2_CONF), { recursive: true });
      fs.writeFileSync(env.SOFTHSM2_CONF, conf);
      fs.mkdirSync(env.QKMS_DATA_DIR, { recursive: true });
      const entrypoint = path.join(ROOT, 'softhsm/init-token.sh');
      const run = await inNamespace([entrypoint, ...fromSources(execForm(effective(stages, stage('softhsm'), 'CMD')!))], env, healthcheckArgv());
      registerSecret(fs.readFileSync(env.QKMS_PKCS11_PIN_FILE, 'utf8'));
      assert.ok(run.isHealthy, run.log);
      assert.equal(run.exitCode, 0, run.log);
      assert.equal(run.healthAfterStop, 1);
      assert.match(run.log, /qkms-init-token: initialised SoftHSM2 token 'qkms'/);
      assert.equal(fs.statSync(env.QKMS_PKCS11_PIN_FILE).mode & 0o777, 0o600);
      assert.ok(fs.readdirSync(path.join(env.QKMS_DATA_DIR, 'tokens')).length === 1);
    });

    it('gateway: a PKCS#11 module mounted at the image\'s QKMS_PKCS11_MODULE (here SoftHSM2 standing in for a vendor\'s) is loaded, and the gateway becomes healthy', async () => {
      const { token } = integration();
      const root = path.join(dir, 'gateway');
      const env = rebase(environment(stages, stage('gateway')), root);
      fs.mkdirSync(path.dirname(env.QKMS_PKCS11_MODULE), { recursive: true });
      fs.symlinkSync(token.modulePath, env.QKMS_PKCS11_MODULE);
      fs.mkdirSync(env.QKMS_DATA_DIR, { recursive: true });
      const pinFile = path.join(root, 'run/secrets/hsm-pin');
      fs.mkdirSync(path.dirname(pinFile), { recursive: true });
      fs.writeFileSync(pinFile, token.pin, { mode: 0o600 });
      // What an operator adds at `docker run`: the token, the PIN as a secret file, and the
      // vendor client's own configuration (SoftHSM2's is SOFTHSM2_CONF).
      const mounted = { ...env, QKMS_PKCS11_TOKEN_LABEL: token.label, QKMS_PKCS11_PIN_FILE: pinFile, QKMS_HSM_PROFILE: 'softhsm2', SOFTHSM2_CONF: token.confPath };
      const run = await inNamespace(fromSources(execForm(effective(stages, stage('gateway'), 'CMD')!)), mounted, healthcheckArgv());
      assert.ok(run.isHealthy, run.log);
      assert.equal(run.exitCode, 0, run.log);
      assert.equal(run.healthAfterStop, 1);
      const starting = run.log.split('\n').find((l) => l.includes('"message":"starting"'))!;
      assert.equal(JSON.parse(starting).settings.QKMS_PKCS11_MODULE, env.QKMS_PKCS11_MODULE);
    });
  });
});

/** The image's absolute paths of its data, configuration and HSM client, moved under `root`. */
function rebase(env: Record<string, string>, root: string): Record<string, string> {
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, /^\/(var\/lib\/qkms|etc\/softhsm|opt\/hsm)(\/|$)/.test(v) ? root + v : v]));
}

/** `node dist/main.js` as the sources run it (dist is their build; building it here would take a core for a minute). */
function fromSources(cmd: string[]): string[] {
  assert.deepEqual(cmd, ['node', 'dist/main.js']);
  return [process.execPath, '--require', require.resolve('tsx/cjs'), path.join(ROOT, 'src/main.ts')];
}

interface NamespaceRun {
  isHealthy: boolean;
  exitCode: number | null;
  healthAfterStop: number | null;
  log: string;
}

/**
 * Runs `argv` with only `env` (plus PATH and the admin credential docker-compose passes) in a new
 * user and network namespace, where 127.0.0.1:8080 is its own, and the HEALTHCHECK command
 * verbatim until it passes (30 s at most); then SIGTERM, and the HEALTHCHECK once more.
 */
async function inNamespace(argv: string[], env: Record<string, string>, healthcheck: string[]): Promise<NamespaceRun> {
  const driver = `
    const { spawn } = require('node:child_process');
    const [argv, check] = JSON.parse(process.argv[1]);
    const gw = spawn(argv[0], argv.slice(1), { cwd: ${JSON.stringify(ROOT)}, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    gw.stdout.on('data', (d) => (log += d));
    gw.stderr.on('data', (d) => (log += d));
    const exited = new Promise((r) => gw.on('exit', (code) => r(code)));
    let hasExited = false;
    exited.then(() => (hasExited = true));
    const health = () => new Promise((r) => spawn(check[0], check.slice(1), { stdio: 'ignore', timeout: 3000 }).on('exit', (code) => r(code)));
    (async () => {
      let isHealthy = false;
      for (const deadline = Date.now() + 30000; !isHealthy && !hasExited && Date.now() < deadline; ) {
        isHealthy = (await health()) === 0;
        if (!isHealthy) await new Promise((r) => setTimeout(r, 200));
      }
      gw.kill('SIGTERM');
      const exitCode = await exited;
      const healthAfterStop = await health();
      process.stdout.write(JSON.stringify({ isHealthy, exitCode, healthAfterStop, log }));
    })();`;
  const nodeDir = path.dirname(process.execPath);
  const fullEnv = { ...env, PATH: `${nodeDir}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin`, QKMS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId, QKMS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey };
  const child = spawn('unshare', ['-rn', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, '-e', driver, JSON.stringify([argv, healthcheck])], { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise((r) => child.on('exit', r));
  assert.ok(out.startsWith('{'), `namespace run failed: ${err}`);
  const run = JSON.parse(out) as NamespaceRun;
  recordLog(run.log);
  return run;
}
