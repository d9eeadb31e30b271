import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { spawnGateway } from '../support/child-gateway';
import { DOCKER_COMPOSE, skipWithout } from '../support/debian-tools';
import { startGateway, type Harness } from '../support/harness';
import { integration } from '../support/integration-hooks';

const ROOT = path.resolve(__dirname, '../..');
/** The environment without QKMS_* (so only the env file speaks) and without a stray .env of the checkout. */
const CLEAN_ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('QKMS_')));

/**
 * No Docker engine runs here, so the compose file is checked as far as it can be without one:
 * `docker-compose config` accepts it, and its healthcheck command and Prometheus scrape target
 * are run against a real gateway.
 */
describe('docker-compose.yml', () => {
  let gw: Harness;
  let compose: any;
  let dir: string;
  let envFile: string;
  const config = (...args: string[]) => execFileSync('docker-compose', ['--env-file', envFile, ...args, 'config'], { cwd: ROOT, encoding: 'utf8', env: CLEAN_ENV, stdio: 'pipe' });
  before(async function () {
    skipWithout(this, DOCKER_COMPOSE); // npm test installs it when root (scripts/ensure-test-tools.sh)
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-compose-'));
    envFile = path.join(dir, '.env');
    // The one documented command (README "docker-compose").
    execFileSync('bash', [path.join(ROOT, 'scripts/compose-env.sh'), envFile], { stdio: 'pipe' });
    compose = YAML.parse(config('--profile', 'monitoring'));
    gw = await startGateway(integration().hsm);
  });
  after(async () => {
    await gw?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('takes the admin credential from the env file scripts/compose-env.sh writes (mode 0600), with no fallback', () => {
    assert.equal(fs.statSync(envFile).mode & 0o777, 0o600);
    const written = Object.fromEntries(fs.readFileSync(envFile, 'utf8').split('\n').filter((l) => /^\w+=/.test(l)).map((l) => l.split(/=(.*)/s).slice(0, 2)));
    assert.match(written.QKMS_ACCESS_KEY_ID, /^AKIA[A-Z0-9]{16}$/);
    assert.ok(written.QKMS_SECRET_ACCESS_KEY.length >= 40);
    for (const service of [compose.services.qkms, YAML.parse(config('--profile', 'replicated')).services['qkms-b']]) {
      assert.equal(service.environment.QKMS_ACCESS_KEY_ID, written.QKMS_ACCESS_KEY_ID);
      assert.equal(service.environment.QKMS_SECRET_ACCESS_KEY, written.QKMS_SECRET_ACCESS_KEY);
      assert.equal(service.environment.QKMS_ARN_FORMAT, 'aws');
    }
    assert.throws(() => execFileSync('bash', [path.join(ROOT, 'scripts/compose-env.sh'), envFile], { stdio: 'pipe' }), /exists; leaving it/, 'never overwrites');
    fs.writeFileSync(path.join(dir, 'empty.env'), '');
    assert.throws(() => execFileSync('docker-compose', ['--env-file', path.join(dir, 'empty.env'), 'config'], { cwd: ROOT, env: CLEAN_ENV, stdio: 'pipe' }), /run bash scripts\/compose-env\.sh first/);
  });

  it("the gateway refuses the public development credential on the container's 0.0.0.0, even when passed explicitly", async () => {
    const { child, output, exited } = spawnGateway({ ...compose.services.qkms.environment, QKMS_HOST: '0.0.0.0', QKMS_ACCESS_KEY_ID: 'AKIAQKMSLOCALDEV0001', QKMS_SECRET_ACCESS_KEY: 'qkms-local-development-only', QKMS_DATA_DIR: path.join(dir, 'data') });
    // A gateway that accepted it would listen on 0.0.0.0 and never exit: stop it and fail.
    const started = setTimeout(() => child.kill('SIGKILL'), 15000);
    const code = await exited;
    clearTimeout(started);
    assert.equal(code, 2, output());
    assert.match(output(), /QKMS_ACCESS_KEY_ID is the published development key id AKIAQKMSLOCALDEV0001 and QKMS_SECRET_ACCESS_KEY is the published development secret/);
  });

  it('keeps the token and the store on a named volume', () => {
    assert.ok(compose.services.qkms.volumes.some((v: string) => v.startsWith('qkms-data:/var/lib/qkms')));
    assert.ok('qkms-data' in compose.volumes);
  });

  it("has a healthcheck on /ready whose command passes against a ready gateway and fails against a stopped one", async () => {
    const [kind, command, flag, script] = compose.services.qkms.healthcheck.test as string[];
    assert.deepEqual([kind, command, flag], ['CMD', 'node', '-e']);
    assert.match(script, /http:\/\/127\.0\.0\.1:8080\/ready/);
    // Asynchronously: the gateway answering it runs in this process.
    const run = (url: string) =>
      new Promise<number | null>((resolve) => spawn(process.execPath, ['-e', script.replace('http://127.0.0.1:8080', url)], { timeout: 10000 }).on('exit', resolve));
    assert.equal(await run(gw.url), 0);
    assert.equal(await run('http://127.0.0.1:9'), 1);
  });

  it('the replicated profile: PostgreSQL, two replicas on one token volume and one database with their own audit chains, the token made once before them, HAProxy on /ready', () => {
    const replicated = YAML.parse(config('--profile', 'replicated'));
    const [a, b] = [replicated.services['qkms-a'], replicated.services['qkms-b']];
    for (const r of [a, b]) {
      assert.match(r.environment.QKMS_STORE_URL, /^postgres:\/\/qkms:[^@]+@postgres:5432\/qkms$/);
      assert.deepEqual(r.volumes.map((v: string) => v.replace(/:rw$/, '')), ['qkms-shared-token:/var/lib/qkms']);
      assert.equal(r.depends_on['qkms-token-init'].condition, 'service_completed_successfully');
      assert.equal(r.depends_on.postgres.condition, 'service_healthy');
    }
    assert.deepEqual([a.environment.QKMS_REPLICA_ID, b.environment.QKMS_REPLICA_ID], ['a', 'b']);
    assert.equal(replicated.services.postgres.environment.POSTGRES_PASSWORD, new URL(a.environment.QKMS_STORE_URL).password);
    const lb = replicated.services.lb;
    const mount: string = lb.volumes.find((v: string) => v.includes(':/usr/local/etc/haproxy/haproxy.cfg'));
    const cfg = fs.readFileSync(mount.split(':')[0], 'utf8');
    assert.match(cfg, /option httpchk GET \/ready/);
    assert.deepEqual([...cfg.matchAll(/^\s*server \w+ ([\w-]+):8080 check/gm)].map((m) => m[1]), ['qkms-a', 'qkms-b']);
    assert.match(cfg, /^\s*retry-on conn-failure$/m, 'only a refused connection is tried elsewhere: no request that reached a replica is replayed');
  });

  it('scrapes the gateway /metrics from the optional Prometheus service', async () => {
    assert.deepEqual(compose.services.prometheus.profiles, ['monitoring']);
    const mount = compose.services.prometheus.volumes.find((v: string) => v.endsWith(':/etc/prometheus/prometheus.yml:ro'));
    const prometheus = YAML.parse(fs.readFileSync(mount.split(':')[0], 'utf8'));
    const job = prometheus.scrape_configs.find((j: any) => j.job_name === 'qkms');
    assert.deepEqual(job.static_configs[0].targets, ['qkms:8080']);
    const res = await fetch(gw.url + job.metrics_path);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    assert.match(await res.text(), /^# HELP /m);
  });
});
