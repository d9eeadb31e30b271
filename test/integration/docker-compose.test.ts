import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { startGateway, type Harness } from '../support/harness';
import { integration } from '../support/integration-hooks';

const ROOT = path.resolve(__dirname, '../..');

/**
 * No Docker engine runs here, so the compose file is checked as far as it can be without one:
 * `docker-compose config` accepts it, and its healthcheck command and Prometheus scrape target
 * are run against a real gateway.
 */
describe('docker-compose.yml', () => {
  let gw: Harness;
  let compose: any;
  before(async () => {
    compose = YAML.parse(execFileSync('docker-compose', ['--profile', 'monitoring', 'config'], { cwd: ROOT, encoding: 'utf8' }));
    gw = await startGateway(integration().hsm);
  });
  after(() => gw.close());

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
    const replicated = YAML.parse(execFileSync('docker-compose', ['--profile', 'replicated', 'config'], { cwd: ROOT, encoding: 'utf8' }));
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
