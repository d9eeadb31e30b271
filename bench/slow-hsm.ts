/**
 * npm run bench:slow-hsm (and part of npm run bench) — GenerateDataKey at c=64 against a slow,
 * network-like HSM: every PKCS#11 call held BENCH_SLOW_HSM_MS (default 1 ms) by the fault-injection
 * file (`[{"function":"*","delayMs":1}]`; a hold this short waits without CPU, faults.ts), with
 * BENCH_SLOW_HSM_THREADS HSM threads (default 1,8,16), each with both data-key constructions: the
 * default (AES_KWP_HMAC: six PKCS#11 calls) and AES_GCM_ENCRYPT (three); /health is asked 50 times a
 * second throughout, as probes would. Each row is a fresh gateway process on a fresh token.
 */
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { CREDENTIALS, cpuSeconds, machineTicks, signedRequest, startGatewayProcess } from './gateway-process';

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);
export const SLOW_HSM_MS = Number(process.env.BENCH_SLOW_HSM_MS ?? 1);
const THREADS = (process.env.BENCH_SLOW_HSM_THREADS ?? '1,8,16').split(',').map(Number);
const WRAPS = ['AES_KWP_HMAC', 'AES_GCM_ENCRYPT'];
const HEALTH_PER_SECOND = 50;
const CONNECTIONS = 64;

export interface SlowHsmRow {
  threads: number;
  wrap: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  cpuMsPerRequest: number;
  /** Share of the machine's CPU time that was busy meanwhile (load generator and probe included). */
  machineBusy: number;
  healthP50: number;
  healthP99: number;
  healthMax: number;
  healthErrors: number;
}

export async function slowHsmTable(): Promise<SlowHsmRow[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-bench-slow-'));
  const faults = path.join(dir, 'faults.json');
  fs.writeFileSync(faults, '[]');
  const rows: SlowHsmRow[] = [];
  try {
    for (const threads of THREADS) for (const wrap of WRAPS) {
      const gw = await startGatewayProcess({ QKMS_FAULTS_FILE: faults, QKMS_HSM_THREADS: String(threads), QKMS_PKCS11_SESSIONS: String(Math.max(4, threads)), QKMS_DATA_KEY_WRAP: wrap });
      try {
        const kms = new KMSClient({ endpoint: gw.url, region: 'us-east-1', credentials: CREDENTIALS, maxAttempts: 1 });
        const keyId = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
        kms.destroy();
        const gdk = await signedRequest(gw.url, 'GenerateDataKey', { KeyId: keyId, KeySpec: 'AES_256' });
        fs.writeFileSync(faults, JSON.stringify([{ function: '*', delayMs: SLOW_HSM_MS }]));
        await new Promise((r) => setTimeout(r, 1200)); // every thread re-reads the plan within a second of its next call
        const cpu0 = cpuSeconds(gw.child.pid!);
        const ticks0 = machineTicks();
        const [load, health] = await Promise.all([
          autocannon({ url: gw.url, connections: CONNECTIONS, duration: DURATION_S, requests: [gdk] }),
          probeHealth(`${gw.url}/health`, DURATION_S),
        ]);
        const cpuMs = (cpuSeconds(gw.child.pid!) - cpu0) * 1000;
        const ticks = machineTicks();
        rows.push({
          threads, wrap, rps: Math.round(load.requests.average), p50: load.latency.p50, p99: load.latency.p99, errors: load.errors + load.timeouts + load.non2xx,
          cpuMsPerRequest: Math.round((cpuMs / Math.max(1, load.requests.total)) * 1000) / 1000,
          machineBusy: Math.round(((ticks.busy - ticks0.busy) / (ticks.total - ticks0.total)) * 100),
          healthP50: health.p50, healthP99: health.p99, healthMax: health.max, healthErrors: health.errors,
        });
        process.stderr.write(`slow HSM (${SLOW_HSM_MS} ms a call), ${threads} HSM thread(s), ${wrap}: ${rows.at(-1)!.rps} req/s, /health p99 ${health.p99} ms\n`);
      } finally {
        fs.writeFileSync(faults, '[]');
        await gw.stop();
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

/** /health asked HEALTH_PER_SECOND times a second from a process of its own (health-probe.js): latencies in ms. */
async function probeHealth(url: string, seconds: number): Promise<{ p50: number; p99: number; max: number; errors: number }> {
  const child = spawn(process.execPath, [path.join(__dirname, 'health-probe.js'), url, String(HEALTH_PER_SECOND), String(seconds)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise((resolve) => child.on('exit', resolve));
  return JSON.parse(out) as { p50: number; p99: number; max: number; errors: number };
}

export function slowHsmMarkdown(rows: SlowHsmRow[]): string {
  const lines = [
    `GenerateDataKey at c=${CONNECTIONS} with every PKCS#11 call held ${SLOW_HSM_MS} ms (a network HSM's round trip; \`[{"function":"*","delayMs":${SLOW_HSM_MS}}]\`), /health ${HEALTH_PER_SECOND} times a second meanwhile:`,
    '',
    '| QKMS_HSM_THREADS | QKMS_DATA_KEY_WRAP | GDK req/s | p50 ms | p99 ms | errors | gateway CPU ms/req | machine busy | /health p50 ms | /health p99 ms | /health max ms | /health errors |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) lines.push(`| ${r.threads} | ${r.wrap} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.errors} | ${r.cpuMsPerRequest} | ${r.machineBusy} % | ${r.healthP50} | ${r.healthP99} | ${r.healthMax} | ${r.healthErrors} |`);
  return lines.join('\n');
}

if (require.main === module) {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  slowHsmTable().then(
    (rows) => process.stdout.write(`${slowHsmMarkdown(rows)}\n`),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
