/**
 * The replicas table of `npm run bench` (also `npm run bench:replicas` alone): GenerateDataKey
 * (AES_256, one key, SigV4-signed once and replayed) at c=64 and c=1 against
 *   - the embedded store (SQLite), one process (QKMS_WORKERS > 1 is refused there), and
 *   - the PostgreSQL store (a throwaway PostgreSQL 15 cluster with fsync on, on this machine) with
 *     1, 2 and 3 gateway processes behind one port (QKMS_WORKERS: each a replica with its own
 *     sessions, HSM thread and audit chain),
 * all on one SoftHSM2 token per run, in one run, so the ratios compare like with like; and one
 * process of each store again without the key cache (QKMS_KEY_CACHE_MS=0), to show what it saves.
 * BENCH_DURATION_S (default 10) per load. Where the two cores go during the c=64 load: CPU per
 * request of the gateway processes (all threads), of the PostgreSQL server's processes and of the
 * load generator (this process), and how busy the machine was.
 */
import autocannon from 'autocannon';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { startPostgres } from '../test/support/postgres';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { cpuSeconds, CREDENTIALS, machineTicks, signedRequest, startGatewayProcess } from './gateway-process';

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);

export interface ReplicaRow {
  store: 'SQLite' | 'PostgreSQL';
  processes: number;
  /** QKMS_KEY_CACHE_MS */
  keyCacheMs: number;
  rps64: number;
  p99At64: number;
  errors64: number;
  p50At1: number;
  /** CPU ms per request at c=64, all threads: the gateway processes, the PostgreSQL server, the load generator. */
  cpu: { gateway: number; database: number; loadGenerator: number };
  /** Share of the machine's CPU time that was busy during the c=64 load. */
  machineBusy: number;
}

/** The process and its descendants (a QKMS_WORKERS primary and its workers). */
function processTree(pid: number): number[] {
  let children: number[] = [];
  try {
    children = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
  return [pid, ...children.flatMap(processTree)];
}

/** The PostgreSQL server's processes (the bench's cluster runs as the postgres user). */
function databaseProcesses(): number[] {
  return spawnSync('pgrep', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim().split(/\s+/).filter(Boolean).map(Number);
}

const cpuOf = (pids: number[]) => pids.reduce((sum, pid) => {
  try {
    return sum + cpuSeconds(pid);
  } catch {
    return sum; // exited meanwhile
  }
}, 0);

async function measure(store: ReplicaRow['store'], processes: number, env: Record<string, string>): Promise<ReplicaRow> {
  const gw = await startGatewayProcess({ ...env, QKMS_WORKERS: String(processes) });
  try {
    // Every worker ready, not only the first: /ready is answered by whichever worker took the connection.
    for (let ok = 0; ok < 4 * processes; ) ok = (await fetch(`${gw.url}/ready`)).ok ? ok + 1 : 0;
    const client = new KMSClient({ endpoint: gw.url, region: 'us-east-1', credentials: CREDENTIALS });
    const keyId = (await client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    client.destroy();
    const request = await signedRequest(gw.url, 'GenerateDataKey', { KeyId: keyId, KeySpec: 'AES_256' });
    await autocannon({ url: gw.url, connections: 16, duration: 2, requests: [request] }); // warm-up
    const gatewayPids = processTree(gw.child.pid!);
    const before = { gateway: cpuOf(gatewayPids), database: cpuOf(databaseProcesses()), self: process.cpuUsage(), machine: machineTicks() };
    const c64 = await autocannon({ url: gw.url, connections: 64, duration: DURATION_S, requests: [request] });
    const self = process.cpuUsage(before.self);
    const machine = machineTicks();
    const perRequest = (seconds: number) => Number(((seconds * 1000) / Math.max(1, c64.requests.total)).toFixed(3));
    const cpu = {
      gateway: perRequest(cpuOf(gatewayPids) - before.gateway),
      database: perRequest(cpuOf(databaseProcesses()) - before.database),
      loadGenerator: perRequest((self.user + self.system) / 1e6),
    };
    const machineBusy = (machine.busy - before.machine.busy) / (machine.total - before.machine.total);
    const c1 = await autocannon({ url: gw.url, connections: 1, duration: Math.max(3, DURATION_S / 2), requests: [request] });
    return { store, processes, keyCacheMs: Number(env.QKMS_KEY_CACHE_MS ?? 500), rps64: Math.round(c64.requests.average), p99At64: c64.latency.p99, errors64: c64.errors + c64.timeouts + c64.non2xx, p50At1: c1.latency.p50, cpu, machineBusy };
  } finally {
    await gw.stop();
  }
}

export async function replicasTable(): Promise<ReplicaRow[]> {
  const rows = [await measure('SQLite', 1, {}), await measure('SQLite', 1, { QKMS_KEY_CACHE_MS: '0' })];
  const pg = await startPostgres({ durable: true });
  try {
    for (const n of [1, 2, 3]) rows.push(await measure('PostgreSQL', n, { QKMS_STORE_URL: await pg.createDatabase('bench') }));
    rows.push(await measure('PostgreSQL', 1, { QKMS_STORE_URL: await pg.createDatabase('bench'), QKMS_KEY_CACHE_MS: '0' }));
  } finally {
    pg.stop();
  }
  return rows;
}

export function replicasMarkdown(rows: ReplicaRow[]): string {
  const one = rows.find((r) => r.store === 'PostgreSQL' && r.processes === 1 && r.keyCacheMs > 0)!;
  const sqlite = rows.find((r) => r.store === 'SQLite' && r.keyCacheMs > 0)!;
  const lines = [
    '| Store | Gateway processes | Key cache ms | GenerateDataKey req/s, c=64 | × one process with the cache | p99 ms, c=64 | errors | p50 ms, c=1 | CPU ms/req: gateway | database | load generator | machine busy |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.store} | ${r.processes} | ${r.keyCacheMs} | ${r.rps64} | ${(r.rps64 / (r.store === 'SQLite' ? sqlite : one).rps64).toFixed(2)} | ${r.p99At64} | ${r.errors64} | ${r.p50At1} | ${r.cpu.gateway} | ${r.cpu.database} | ${r.cpu.loadGenerator} | ${Math.round(r.machineBusy * 100)} % |`),
  ];
  lines.push('', `PostgreSQL store's added latency at c=1: ${(one.p50At1 - sqlite.p50At1).toFixed(1)} ms (p50, one process each).`);
  return lines.join('\n');
}

if (require.main === module) {
  void replicasTable().then((rows) => console.log(replicasMarkdown(rows)));
}
