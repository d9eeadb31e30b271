/**
 * npm run bench:audit — what the durable audit trail costs a request. GenerateDataKey at
 * BENCH_CONCURRENCY (1,16,64), in one run, against the same compiled gateway
 * (bench/audit-gateway.js) on three data dirs:
 *   without  the audit log drops every record (BENCH_AUDIT=off): no trail at all;
 *   durable  the trail as shipped, on this machine's disk (the temp dir);
 *   tmpfs    the same on /dev/shm, where fdatasync and the anchor's SQLite commit cost nothing:
 *            durable − tmpfs is the price of durability, tmpfs − without the rest (the HSM HMACs,
 *            one write per batch, holding the answer until its batch committed).
 * Each concurrency runs the three in turn, BENCH_ROUNDS (3) times, BENCH_DURATION_S (5) seconds
 * each, and reports each variant's median run: on a shared machine the load of the moment moves
 * single runs more than the trail does. Records per batch and the mean commit time come from each
 * gateway's /metrics.
 * Writes bench/results/audit-latest.{md,json}.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { CREDENTIALS, cpuSeconds, signedRequest, startGatewayProcess } from './gateway-process';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? '1,16,64').split(',').map(Number);
const ENTRY = [path.join(__dirname, 'audit-gateway.js')];

const VARIANTS = [
  { name: 'without', env: { BENCH_AUDIT: 'off' }, dataDirIn: os.tmpdir() },
  { name: 'durable', env: {}, dataDirIn: os.tmpdir() },
  { name: 'tmpfs', env: {}, dataDirIn: '/dev/shm' },
] as const;

interface Row {
  variant: string;
  concurrency: number;
  rps: number;
  meanMs: number;
  p50: number;
  p99: number;
  errors: number;
  cpuMsPerRequest: number;
  recordsPerBatch?: number;
  commitMs?: number;
}

/** Sum and count of a histogram in the gateway's /metrics. */
async function histogram(url: string, name: string): Promise<{ sum: number; count: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const value = (suffix: string) => Number(new RegExp(`^${name}_${suffix} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  return { sum: value('sum'), count: value('count') };
}

async function main(): Promise<void> {
  const gateways = [];
  try {
    for (const v of VARIANTS) {
      const gw = await startGatewayProcess({ ...v.env }, { entry: ENTRY, dataDirIn: v.dataDirIn });
      const kms = new KMSClient({ endpoint: gw.url, region: 'us-east-1', credentials: CREDENTIALS, maxAttempts: 1 });
      const keyId = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      kms.destroy();
      gateways.push({ ...v, gw, request: await signedRequest(gw.url, 'GenerateDataKey', { KeyId: keyId, KeySpec: 'AES_256' }) });
    }
    const rows: Row[] = [];
    for (const c of CONCURRENCY) {
      const runs = new Map<string, Row[]>();
      for (let round = 0; round < ROUNDS; round++) {
        for (const { name, gw, request } of gateways) {
          const row = await measure(name, c, gw, request);
          runs.set(name, [...(runs.get(name) ?? []), row]);
          process.stderr.write(`${name} c=${c} round ${round + 1}: ${row.rps.toFixed(0)} req/s, p50 ${row.p50} ms, p99 ${row.p99} ms, errors ${row.errors}\n`);
        }
      }
      for (const name of runs.keys()) rows.push(median(runs.get(name)!));
    }
    const machine = { cpus: `${os.cpus().length} × ${os.cpus()[0].model}`, node: process.version, date: new Date().toISOString(), durationSecondsPerRun: DURATION_S, rounds: ROUNDS, tmpdir: os.tmpdir() };
    const md = report(machine, rows);
    fs.writeFileSync(path.join(__dirname, 'results/audit-latest.md'), md);
    fs.writeFileSync(path.join(__dirname, 'results/audit-latest.json'), `${JSON.stringify({ machine, rows }, null, 2)}\n`);
    process.stdout.write(md);
  } finally {
    for (const { gw } of gateways) await gw.stop();
  }
}

async function measure(variant: string, concurrency: number, gw: { url: string; child: { pid?: number } }, request: Awaited<ReturnType<typeof signedRequest>>): Promise<Row> {
  const before = [await histogram(gw.url, 'qkms_audit_batch_records'), await histogram(gw.url, 'qkms_audit_commit_duration_seconds'), cpuSeconds(gw.child.pid!)] as const;
  const r = await autocannon({ url: gw.url, connections: concurrency, duration: DURATION_S, requests: [request] });
  const after = [await histogram(gw.url, 'qkms_audit_batch_records'), await histogram(gw.url, 'qkms_audit_commit_duration_seconds'), cpuSeconds(gw.child.pid!)] as const;
  const batches = after[0].count - before[0].count;
  return {
    variant, concurrency, rps: r.requests.average, meanMs: r.latency.average, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.timeouts + r.non2xx,
    cpuMsPerRequest: Math.round(((after[2] - before[2]) * 1e6) / Math.max(r.requests.total, 1)) / 1000,
    ...(batches > 0 && { recordsPerBatch: (after[0].sum - before[0].sum) / batches, commitMs: ((after[1].sum - before[1].sum) * 1000) / batches }),
  };
}

/** The run with the median throughput, its other figures with it. */
function median(runs: Row[]): Row {
  return [...runs].sort((a, b) => a.rps - b.rps)[Math.floor(runs.length / 2)];
}

function report(machine: Record<string, unknown>, rows: Row[]): string {
  const f = (x: number | undefined, digits = 2) => (x === undefined ? '–' : x.toFixed(digits));
  const lines = [
    `Machine: ${machine.cpus}, Node ${machine.node}; ${machine.durationSecondsPerRun} s per run, the median of ${machine.rounds}; data dirs in ${machine.tmpdir} (durable) and /dev/shm (tmpfs); load generator on the same machine; ${machine.date}`,
    '',
    'GenerateDataKey, the same compiled gateway without an audit trail, with the durable trail, and with the trail on tmpfs:',
    '',
    '| c | trail | req/s | ÷ without | mean ms | + ms vs without | p50 ms | p99 ms | errors | gateway CPU ms/req | records/batch | commit ms/batch |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const without = rows.find((x) => x.concurrency === r.concurrency && x.variant === 'without')!;
    lines.push(`| ${r.concurrency} | ${r.variant} | ${r.rps.toFixed(0)} | ${(r.rps / without.rps).toFixed(2)} | ${r.meanMs.toFixed(2)} | ${(r.meanMs - without.meanMs).toFixed(2)} | ${r.p50} | ${r.p99} | ${r.errors} | ${r.cpuMsPerRequest} | ${f(r.recordsPerBatch, 1)} | ${f(r.commitMs)} |`);
  }
  return `${lines.join('\n')}\n`;
}

void main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
