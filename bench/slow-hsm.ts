/**
 * npm run bench:slow-hsm (and part of npm run bench) — GenerateDataKey at c=64 against a slow,
 * network-like HSM: every PKCS#11 call held BENCH_SLOW_HSM_MS (default 1 ms) by the fault-injection
 * file (`[{"function":"*","delayMs":1}]`; a hold this short waits without CPU, faults.ts), with 1
 * HSM thread and with BENCH_SLOW_HSM_THREADS (default 1,16,32), and /health on one more connection
 * throughout. Each row is a fresh gateway process on a fresh token (gateway-process.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { CREDENTIALS, cpuSeconds, signedRequest, startGatewayProcess } from './gateway-process';

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);
export const SLOW_HSM_MS = Number(process.env.BENCH_SLOW_HSM_MS ?? 1);
const THREADS = (process.env.BENCH_SLOW_HSM_THREADS ?? '1,16,32').split(',').map(Number);
const CONNECTIONS = 64;

export interface SlowHsmRow {
  threads: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  cpuMsPerRequest: number;
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
    for (const threads of THREADS) {
      const gw = await startGatewayProcess({ QKMS_FAULTS_FILE: faults, QKMS_HSM_THREADS: String(threads), QKMS_PKCS11_SESSIONS: String(Math.max(4, threads)) });
      try {
        const kms = new KMSClient({ endpoint: gw.url, region: 'us-east-1', credentials: CREDENTIALS, maxAttempts: 1 });
        const keyId = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
        kms.destroy();
        const gdk = await signedRequest(gw.url, 'GenerateDataKey', { KeyId: keyId, KeySpec: 'AES_256' });
        fs.writeFileSync(faults, JSON.stringify([{ function: '*', delayMs: SLOW_HSM_MS }]));
        await new Promise((r) => setTimeout(r, 1200)); // every thread re-reads the plan within a second of its next call
        const cpu0 = cpuSeconds(gw.child.pid!);
        const [load, health] = await Promise.all([
          autocannon({ url: gw.url, connections: CONNECTIONS, duration: DURATION_S, requests: [gdk] }),
          autocannon({ url: `${gw.url}/health`, connections: 1, duration: DURATION_S }),
        ]);
        const cpuMs = (cpuSeconds(gw.child.pid!) - cpu0) * 1000;
        rows.push({
          threads, rps: Math.round(load.requests.average), p50: load.latency.p50, p99: load.latency.p99, errors: load.errors + load.timeouts + load.non2xx,
          cpuMsPerRequest: Math.round((cpuMs / Math.max(1, load.requests.total)) * 1000) / 1000,
          healthP50: health.latency.p50, healthP99: health.latency.p99, healthMax: health.latency.max, healthErrors: health.errors + health.non2xx,
        });
        process.stderr.write(`slow HSM (${SLOW_HSM_MS} ms a call), ${threads} HSM thread(s): ${rows.at(-1)!.rps} req/s, /health p99 ${health.latency.p99} ms\n`);
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

export function slowHsmMarkdown(rows: SlowHsmRow[]): string {
  const lines = [
    `GenerateDataKey at c=${CONNECTIONS} with every PKCS#11 call held ${SLOW_HSM_MS} ms (a network HSM's round trip; \`[{"function":"*","delayMs":${SLOW_HSM_MS}}]\`), /health on one more connection:`,
    '',
    '| QKMS_HSM_THREADS | GDK req/s | p50 ms | p99 ms | errors | gateway CPU ms/req | /health p50 ms | /health p99 ms | /health max ms | /health errors |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) lines.push(`| ${r.threads} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.errors} | ${r.cpuMsPerRequest} | ${r.healthP50} | ${r.healthP99} | ${r.healthMax} | ${r.healthErrors} |`);
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
