import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateKeyCommand, DescribeKeyCommand, GenerateDataKeyCommand, NotFoundException } from '@aws-sdk/client-kms';
import YAML from 'yaml';
import { PROMETHEUS, skipWithout } from '../support/debian-tools';
import { startGateway, type Harness } from '../support/harness';
import { integration } from '../support/integration-hooks';
import { freePort } from '../support/free-port';

const ROOT = path.resolve(__dirname, '../..');


/**
 * The "done when": an operator sees request rates, errors and HSM latency in Prometheus.
 * A real Prometheus (Debian's `prometheus`, installed by .ci/run) runs the shipped scrape config,
 * pointed at a real gateway, and answers the queries an operator would type.
 */
describe('Prometheus scraping the gateway (deploy/prometheus.yml)', function () {
  this.timeout(90000);
  let gw: Harness;
  let prometheus: ChildProcess;
  let promUrl: string;
  let dir: string;
  let log = '';

  before(async function () {
    skipWithout(this, PROMETHEUS); // npm test installs it when root (scripts/ensure-test-tools.sh)
    gw = await startGateway(integration().hsm, {}, { single: 'Prometheus scrapes one process (each replica is a target of its own)' });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-prometheus-'));
    const config = YAML.parse(fs.readFileSync(path.join(ROOT, 'deploy/prometheus.yml'), 'utf8'));
    config.global.scrape_interval = '1s';
    config.scrape_configs[0].static_configs[0].targets = [new URL(gw.url).host];
    fs.writeFileSync(path.join(dir, 'prometheus.yml'), YAML.stringify(config));
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    prometheus = spawn('prometheus', [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    prometheus.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    prometheus.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    await new Promise<void>((resolve, reject) => {
      prometheus.once('error', (err) => reject(new Error(`cannot run prometheus: ${err.message}`)));
      prometheus.once('spawn', () => resolve());
    });
  });
  after(async () => {
    prometheus?.kill('SIGTERM');
    await gw?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const query = async (promql: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> => {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await res.json()) as { status: string; data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
    assert.equal(body.status, 'success', JSON.stringify(body));
    return body.data.result;
  };

  it('shows request rates by operation, errors by type, PKCS#11 latency by function and the token state', async () => {
    const keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    await assert.rejects(gw.client.send(new DescribeKeyCommand({ KeyId: '11111111-2222-3333-4444-555555555555' })), NotFoundException);
    let isLoading = true;
    const load = (async () => {
      while (isLoading) await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
    })();
    try {
      const deadline = Date.now() + 60000;
      for (;;) {
        const [rate, errors, latency, up] = await Promise.all([
          query('sum by (operation) (rate(qkms_requests_total{operation="GenerateDataKey",outcome="success"}[5s]))').catch(() => []),
          query('sum by (operation, outcome) (qkms_requests_total{outcome!="success"})').catch(() => []),
          query('histogram_quantile(0.99, sum by (le, function) (rate(qkms_pkcs11_call_duration_seconds_bucket{function="C_WrapKey"}[5s])))').catch(() => []),
          query('qkms_hsm_token_up').catch(() => []),
        ]);
        const isSeen =
          Number(rate[0]?.value[1]) > 0 &&
          errors.some((r) => r.metric.operation === 'DescribeKey' && r.metric.outcome === 'NotFoundException' && Number(r.value[1]) === 1) &&
          Number(latency[0]?.value[1]) > 0 &&
          Number(up[0]?.value[1]) === 1;
        if (isSeen) {
          assert.ok(Number(latency[0].value[1]) < 10, 'C_WrapKey p99 in seconds, under the largest bucket');
          break;
        }
        assert.ok(Date.now() < deadline, `Prometheus never showed it: ${JSON.stringify({ rate, errors, latency, up })}\n${log.slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 500));
      }
    } finally {
      isLoading = false;
      await load;
    }
  });
});
