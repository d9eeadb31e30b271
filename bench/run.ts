/**
 * npm run bench — the gateway on a fresh SoftHSM2 token, driven over HTTP with SigV4-signed
 * requests (each signed once and replayed inside the 5-minute window) by autocannon at several
 * concurrencies, and in the same run the two floors it is measured against:
 *   (a) the same PKCS#11 call sequence (Envelope over Pkcs11Hsm) in a tight in-process loop, and
 *       the GenerateDataKey sequence sync vs pkcs11js async vs the HSM thread (hsm-call-modes.ts);
 *   (b) the same Express stack and load generator with a handler that returns a fixed response.
 * Then GenerateDataKey with PKCS#11 on the event loop (QKMS_HSM_THREAD=false) for comparison, and
 * /health latency while the gateway is saturated: by CPU, and by a slow HSM (every C_WrapKey held
 * BENCH_SLOW_HSM_MS, default 2 ms, with the fault-injection file, as a network HSM's round trip).
 * Then the replicas table (replicas.ts): SQLite, and PostgreSQL with 1, 2 and 3 gateway processes.
 * Prints the tables and writes bench/results/latest.{md,json}. BENCH_DURATION_S (default 10) per run.
 */
import { fork } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { CreateKeyCommand, GenerateDataKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { Envelope, envelopeModes } from '../src/domain/envelope';
import { encodeEncryptionContext } from '../src/domain/encryption-context';
import { unpackBlob } from '../src/domain/ciphertext-blob';
import { Pkcs11Hsm } from '../src/hsm/pkcs11/pkcs11-hsm';
import { SqliteKeyRepository } from '../src/store/sqlite-key-repository';
import { HsmThread } from '../src/hsm/thread/hsm-thread';
import { CREDENTIALS, cpuSeconds, freePort, signedRequest, startGatewayProcess, waitForPort } from './gateway-process';
import { envelopeOp, openAsyncMode, timeMode, type ModeResult } from './hsm-call-modes';
import { replicasMarkdown, replicasTable } from './replicas';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? '1,16,64').split(',').map(Number);
const SLOW_HSM_MS = Number(process.env.BENCH_SLOW_HSM_MS ?? 2);

type Request = { method: 'POST'; path: string; headers: Record<string, string>; body: string };
interface Load { rps: number; p50: number; p99: number; max: number; errors: number; requests: number; cpuMsPerRequest?: number }

/** autocannon against url; with `pid`, also the CPU that process spent per request. */
async function load(url: string, connections: number, request: Request, pid?: number): Promise<Load> {
  const cpu0 = pid ? cpuSeconds(pid) : 0;
  const r = await autocannon({ url, connections, duration: DURATION_S, requests: [request] });
  const result: Load = { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max, errors: r.errors + r.timeouts + r.non2xx, requests: r.requests.total };
  if (pid && r.requests.total > 0) result.cpuMsPerRequest = Math.round(((cpuSeconds(pid) - cpu0) * 1000000) / r.requests.total) / 1000;
  return result;
}

/** Floor (a): the operation's HSM work, in process, as fast as one thread can go. */
async function hsmFloor(hsm: Pkcs11Hsm, op: () => Promise<unknown>): Promise<{ opsPerSecond: number; callsPerOp: Record<string, number> }> {
  const before = hsm.callCounts();
  let n = 0;
  const end = performance.now() + (DURATION_S * 1000) / 2;
  while (performance.now() < end) {
    await op();
    n++;
  }
  const after = hsm.callCounts();
  const callsPerOp = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, (v - (before[k] ?? 0)) / n]).filter(([, v]) => (v as number) > 0));
  return { opsPerSecond: n / ((DURATION_S * 1000) / 2 / 1000), callsPerOp };
}

/** GenerateDataKey at c=64 and /health on one more connection, at the same time. */
async function healthUnderLoad(url: string, gdk: Request, pid: number): Promise<{ gdk: Load; health: Load }> {
  const [gdkRun, health] = await Promise.all([load(url, 64, gdk, pid), autocannon({ url: `${url}/health`, connections: 1, duration: DURATION_S })]);
  return { gdk: gdkRun, health: { rps: health.requests.average, p50: health.latency.p50, p99: health.latency.p99, max: health.latency.max, errors: health.errors + health.non2xx, requests: health.requests.total } };
}

/** A second gateway on its own token with these settings; returns its /health-under-load figures and GDK rows. */
async function variant(env: Record<string, string>, concurrencies: number[]): Promise<{ rows: Load[]; health: { gdk: Load; health: Load } }> {
  const gw = await startGatewayProcess(env);
  try {
    const kms = new KMSClient({ endpoint: gw.url, region: 'us-east-1', credentials: CREDENTIALS, maxAttempts: 1 });
    const keyId = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    kms.destroy();
    const gdk = await signedRequest(gw.url, 'GenerateDataKey', { KeyId: keyId, KeySpec: 'AES_256' });
    const rows: Load[] = [];
    for (const c of concurrencies) rows.push(await load(gw.url, c, gdk, gw.child.pid!));
    return { rows, health: await healthUnderLoad(gw.url, gdk, gw.child.pid!) };
  } finally {
    await gw.stop();
  }
}

async function main(): Promise<void> {
  const gateway = await startGatewayProcess();
  const { url, token, dataDir } = gateway;
  const floorPort = await freePort();
  const floor = fork(path.join(__dirname, 'express-floor.js'), [String(floorPort)], { stdio: 'ignore' });
  const slowDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-bench-faults-'));
  try {
    await waitForPort(floorPort, floor);
    const kms = new KMSClient({ endpoint: url, region: 'us-east-1', credentials: CREDENTIALS, maxAttempts: 1 });
    const keyId = (await kms.send(new CreateKeyCommand({ Description: 'bench' }))).KeyMetadata!.KeyId!;
    const blob = (await kms.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }))).CiphertextBlob!;
    kms.destroy();
    const plaintext4k = crypto.randomBytes(4096).toString('base64');
    const ops: Array<[string, string, object]> = [
      ['GenerateDataKey', 'GenerateDataKey', { KeyId: keyId, KeySpec: 'AES_256' }],
      ['Decrypt', 'Decrypt', { CiphertextBlob: Buffer.from(blob).toString('base64') }],
      ['Encrypt 4 KiB', 'Encrypt', { KeyId: keyId, Plaintext: plaintext4k }],
    ];

    // Floor (a) in this process, on the same token, after the gateway made the key.
    const options = { modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, sessions: 16 };
    const hsm = await Pkcs11Hsm.open(options);
    const envelope = new Envelope(hsm, envelopeModes(hsm.capabilities(), 'AES_KWP_HMAC'));
    const context = encodeEncryptionContext({}, 8192);
    const parsed = unpackBlob(Buffer.from(blob));
    // The key's token objects, by the ids the gateway recorded (read beside it, read-only).
    const store = new SqliteKeyRepository(path.join(dataDir, 'qkms.db'), { isReadOnly: true });
    const material = (await store.getMaterial(keyId, 1))!;
    await store.close();
    const floors = {
      GenerateDataKey: await hsmFloor(hsm, () => envelope.sealNewDataKey(material, 32, context)),
      Decrypt: await hsmFloor(hsm, () => envelope.open(parsed, material, context)),
      'Encrypt 4 KiB': await hsmFloor(hsm, () => envelope.encrypt(material, Buffer.from(plaintext4k, 'base64'), context)),
    };
    // The GenerateDataKey sequence: sync vs pkcs11js async vs the HSM thread.
    const modeMs = (DURATION_S * 1000) / 2;
    const modes: ModeResult[] = [await timeMode('sync (event loop)', 1, modeMs, envelopeOp(hsm, material))];
    const asyncMode = openAsyncMode(token.modulePath, token.label, material, 16);
    modes.push(await timeMode('pkcs11js async (libuv pool)', 16, modeMs, asyncMode.op));
    asyncMode.close();
    const thread = await HsmThread.open({ ...options, stuckAfterMs: 5000 });
    for (const c of [1, 16]) modes.push(await timeMode('HSM thread', c, modeMs, envelopeOp(thread, material)));
    await hsm.close();
    await thread.close(); // its C_Finalize finds the module finalised already: harmless

    const rows: Array<Record<string, unknown>> = [];
    for (const [name, target, body] of ops) {
      for (const c of CONCURRENCY) {
        const g = await load(url, c, await signedRequest(url, target, body), gateway.child.pid!);
        const e = await load(`http://127.0.0.1:${floorPort}`, c, await signedRequest(`http://127.0.0.1:${floorPort}`, target, body), floor.pid!);
        rows.push({ operation: name, concurrency: c, gateway: g, expressFloor: e, hsmFloorOpsPerSecond: floors[name as keyof typeof floors].opsPerSecond });
        process.stderr.write(`${name} c=${c}: ${g.rps.toFixed(0)} req/s (express floor ${e.rps.toFixed(0)}), p99 ${g.p99} ms, errors ${g.errors}\n`);
      }
    }
    const cpuSaturated = await healthUnderLoad(url, await signedRequest(url, 'GenerateDataKey', ops[0][2]), gateway.child.pid!);
    const eventLoop = await variant({ QKMS_HSM_THREAD: 'false' }, CONCURRENCY);
    const slowFaults = path.join(slowDir, 'slow-hsm.json');
    fs.writeFileSync(slowFaults, JSON.stringify([{ function: 'C_WrapKey', delayMs: SLOW_HSM_MS }]));
    const slow = {
      thread: (await variant({ QKMS_FAULTS_FILE: slowFaults }, [])).health,
      eventLoop: (await variant({ QKMS_FAULTS_FILE: slowFaults, QKMS_HSM_THREAD: 'false' }, [])).health,
    };

    const machine = {
      cpus: `${os.cpus().length} × ${os.cpus()[0].model}`, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version,
      softhsm: spawnText('softhsm2-util', ['--version']), date: new Date().toISOString(), durationSecondsPerRun: DURATION_S,
    };
    // The replicas table, on fresh tokens of its own, in the same run (replicas.ts).
    const replicas = await replicasTable();
    const md = `${report({ machine, floors, rows, modes, eventLoop: eventLoop.rows, cpuSaturated, cpuSaturatedEventLoop: eventLoop.health, slow })}\n## Replicas and workers\n\n${replicasMarkdown(replicas)}\n`;
    fs.writeFileSync(path.join(__dirname, 'results/latest.md'), md);
    fs.writeFileSync(path.join(__dirname, 'results/latest.json'), JSON.stringify({ machine, floors, modes, rows, eventLoopRows: eventLoop.rows, healthUnderLoad: { cpuSaturated, eventLoopCpuSaturated: eventLoop.health, slowHsmMs: SLOW_HSM_MS, slow }, replicas }, null, 2));
    process.stdout.write(md);
  } finally {
    floor.kill('SIGTERM');
    await gateway.stop();
    fs.rmSync(slowDir, { recursive: true, force: true });
  }
}

function spawnText(cmd: string, args: string[]): string {
  return require('node:child_process').execFileSync(cmd, args, { encoding: 'utf8' }).trim();
}

interface Report {
  machine: Record<string, unknown>;
  floors: Record<string, { opsPerSecond: number; callsPerOp: Record<string, number> }>;
  rows: Array<Record<string, any>>;
  modes: ModeResult[];
  eventLoop: Load[];
  cpuSaturated: { gdk: Load; health: Load };
  cpuSaturatedEventLoop: { gdk: Load; health: Load };
  slow: { thread: { gdk: Load; health: Load }; eventLoop: { gdk: Load; health: Load } };
}

function report(r: Report): string {
  const m = r.machine;
  const lines = [
    `Machine: ${m.cpus}, ${m.memoryGiB} GiB, Node ${m.node}, SoftHSM ${m.softhsm}; ${m.durationSecondsPerRun} s per run; load generator on the same machine; ${m.date}`,
    '',
    'Gateway (default: PKCS#11 on the HSM thread) against the floors:',
    '',
    '| operation | c | gateway req/s | p50 ms | p99 ms | max ms | errors | gateway CPU ms/req | Express floor req/s | floor p99 ms | gateway ÷ Express floor | p99 ÷ floor p99 | HSM floor ops/s (1 thread) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const row of r.rows) {
    const g = row.gateway as Load;
    const e = row.expressFloor as Load;
    lines.push(`| ${row.operation} | ${row.concurrency} | ${g.rps.toFixed(0)} | ${g.p50} | ${g.p99} | ${g.max} | ${g.errors} | ${g.cpuMsPerRequest} | ${e.rps.toFixed(0)} | ${e.p99} | ${(g.rps / e.rps).toFixed(2)} | ${(g.p99 / Math.max(e.p99, 1)).toFixed(1)} | ${row.hsmFloorOpsPerSecond.toFixed(0)} |`);
  }
  lines.push('', 'GenerateDataKey with PKCS#11 on the event loop (QKMS_HSM_THREAD=false):', '', '| c | req/s | p50 ms | p99 ms | max ms | errors | gateway CPU ms/req |', '|---|---|---|---|---|---|---|');
  CONCURRENCY.forEach((c, i) => {
    const g = r.eventLoop[i];
    lines.push(`| ${c} | ${g.rps.toFixed(0)} | ${g.p50} | ${g.p99} | ${g.max} | ${g.errors} | ${g.cpuMsPerRequest} |`);
  });
  lines.push('', 'The GenerateDataKey HSM sequence in one process (sync vs async vs worker thread):', '', '| mode | concurrency | ops/s | longest event-loop stall ms | RSS growth B/op |', '|---|---|---|---|---|');
  for (const x of r.modes) lines.push(`| ${x.mode} | ${x.concurrency} | ${x.opsPerSecond} | ${x.maxLoopStallMs} | ${x.rssBytesPerOp} |`);
  lines.push('', '/health (one connection) while GenerateDataKey runs at c=64:', '', '| gateway saturated by | PKCS#11 on | GDK req/s | /health p50 ms | /health p99 ms | /health max ms | errors |', '|---|---|---|---|---|---|---|');
  const h = (by: string, on: string, x: { gdk: Load; health: Load }) => lines.push(`| ${by} | ${on} | ${x.gdk.rps.toFixed(0)} | ${x.health.p50} | ${x.health.p99} | ${x.health.max} | ${x.gdk.errors + x.health.errors} |`);
  h('CPU (SoftHSM2, fast)', 'HSM thread', r.cpuSaturated);
  h('CPU (SoftHSM2, fast)', 'event loop', r.cpuSaturatedEventLoop);
  h(`the HSM (C_WrapKey held ${SLOW_HSM_MS} ms)`, 'HSM thread', r.slow.thread);
  h(`the HSM (C_WrapKey held ${SLOW_HSM_MS} ms)`, 'event loop', r.slow.eventLoop);
  lines.push('', 'PKCS#11 calls per operation (floor loop; no C_OpenSession, C_Login or C_FindObjects per request):', '');
  for (const [op, f] of Object.entries(r.floors)) {
    lines.push(`- ${op}: ${Object.entries(f.callsPerOp).map(([k, v]) => `${k} ${Number(v).toFixed(2)}`).join(', ')}`);
  }
  return `${lines.join('\n')}\n`;
}

void main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
