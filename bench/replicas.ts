/**
 * The replicas table of `npm run bench` (also `npm run bench:replicas` alone): GenerateDataKey
 * (AES_256, one key, SigV4-signed once and replayed) at c=64 and c=1 against
 *   - the embedded store (SQLite), one process (QKMS_WORKERS > 1 is refused there), and
 *   - the PostgreSQL store (a throwaway PostgreSQL 15 cluster with fsync on, on this machine) with
 *     1, 2 and 3 gateway processes behind one port (QKMS_WORKERS: each a replica with its own
 *     sessions, HSM thread and audit chain),
 * all on one SoftHSM2 token per run, in one run, so the ratios compare like with like.
 * BENCH_DURATION_S (default 10) per load.
 */
import autocannon from 'autocannon';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { startPostgres } from '../test/support/postgres';
import { CREDENTIALS, signedRequest, startGatewayProcess } from './gateway-process';

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);

export interface ReplicaRow {
  store: 'SQLite' | 'PostgreSQL';
  processes: number;
  rps64: number;
  p99At64: number;
  errors64: number;
  p50At1: number;
}

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
    const c64 = await autocannon({ url: gw.url, connections: 64, duration: DURATION_S, requests: [request] });
    const c1 = await autocannon({ url: gw.url, connections: 1, duration: Math.max(3, DURATION_S / 2), requests: [request] });
    return { store, processes, rps64: Math.round(c64.requests.average), p99At64: c64.latency.p99, errors64: c64.errors + c64.timeouts + c64.non2xx, p50At1: c1.latency.p50 };
  } finally {
    await gw.stop();
  }
}

export async function replicasTable(): Promise<ReplicaRow[]> {
  const rows = [await measure('SQLite', 1, {})];
  const pg = await startPostgres({ durable: true });
  try {
    for (const n of [1, 2, 3]) rows.push(await measure('PostgreSQL', n, { QKMS_STORE_URL: await pg.createDatabase('bench') }));
  } finally {
    pg.stop();
  }
  return rows;
}

export function replicasMarkdown(rows: ReplicaRow[]): string {
  const one = rows.find((r) => r.store === 'PostgreSQL' && r.processes === 1)!;
  const sqlite = rows.find((r) => r.store === 'SQLite')!;
  const lines = [
    '| Store | Gateway processes | GenerateDataKey req/s, c=64 | × one process | p99 ms, c=64 | errors | p50 ms, c=1 |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.store} | ${r.processes} | ${r.rps64} | ${(r.rps64 / (r.store === 'SQLite' ? sqlite : one).rps64).toFixed(2)} | ${r.p99At64} | ${r.errors64} | ${r.p50At1} |`),
  ];
  lines.push('', `PostgreSQL store's added latency at c=1: ${(one.p50At1 - sqlite.p50At1).toFixed(1)} ms (p50, one process each).`);
  return lines.join('\n');
}

if (require.main === module) {
  void replicasTable().then((rows) => console.log(replicasMarkdown(rows)));
}
