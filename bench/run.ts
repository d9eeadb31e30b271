/**
 * npm run bench — the gateway on a fresh SoftHSM2 token, driven over HTTP with SigV4-signed
 * requests (each signed once and replayed inside the 5-minute window) by autocannon at several
 * concurrencies, and in the same run what it is measured against:
 *   (a) the same PKCS#11 call sequence (Envelope over Pkcs11Hsm) in a tight in-process loop, and
 *       the GenerateDataKey sequence sync vs pkcs11js async vs the HSM thread (hsm-call-modes.ts);
 *   (b) the same Express stack and load generator with a handler that returns a fixed response;
 *   (c) moto_server, the mock CI users pick today (skipped, with the reason, when it is absent).
 * Then GenerateDataKey sealed with AES_GCM_ENCRYPT against its own floor, with PKCS#11 on the event
 * loop (QKMS_HSM_THREAD=false), /health while the gateway is saturated, a slow network-like HSM
 * with several HSM threads (slow-hsm.ts), where the event loop's CPU goes (cpu-stages.ts), and the
 * replicas table (replicas.ts). Prints the tables and writes bench/results/latest.{md,json}.
 * BENCH_DURATION_S (default 10) per run.
 */
import { fork, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
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
import { slowHsmMarkdown, slowHsmTable } from './slow-hsm';
import { cpuStages, cpuStagesMarkdown } from './cpu-stages';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? '1,16,64').split(',').map(Number);

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

/**
 * The same load for a server that closes every connection after one answer (moto_server's werkzeug
 * sends `Connection: close`, after which autocannon sends nothing more on that connection): c
 * loops, each a new connection per request.
 */
async function loadClosing(url: string, connections: number, request: Request): Promise<Load> {
  const latencies: number[] = [];
  let errors = 0;
  const end = performance.now() + DURATION_S * 1000;
  await Promise.all(Array.from({ length: connections }, async () => {
    while (performance.now() < end) {
      const started = performance.now();
      const ok = await new Promise<boolean>((resolve) => {
        const req = http.request(url, { method: request.method, path: request.path, headers: request.headers, agent: false, timeout: 10000 }, (res) => {
          res.resume().on('end', () => resolve(res.statusCode === 200));
        });
        req.on('error', () => resolve(false)).on('timeout', () => req.destroy());
        req.end(request.body);
      });
      latencies.push(performance.now() - started);
      if (!ok) errors++;
    }
  }));
  latencies.sort((a, b) => a - b);
  const at = (q: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0);
  return { rps: latencies.length / DURATION_S, p50: at(0.5), p99: at(0.99), max: at(1), errors, requests: latencies.length };
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

/** moto_server on a free port, or why there is none. */
async function startMoto(): Promise<{ url: string; stop(): void } | { skipped: string }> {
  const port = await freePort();
  const child = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  const failed = new Promise<string>((resolve) => child.on('error', (err) => resolve(`moto_server could not be started (${err.message}); install it with the image's Python: pip install 'moto[server]'`)));
  for (const deadline = Date.now() + 20000; Date.now() < deadline; ) {
    const why = await Promise.race([failed, new Promise<undefined>((r) => setTimeout(() => r(undefined), 200))]);
    if (why) return { skipped: why };
    if (await fetch(`http://127.0.0.1:${port}/moto-api/`).then(() => true, () => false)) return { url: `http://127.0.0.1:${port}`, stop: () => child.kill('SIGTERM') };
  }
  child.kill('SIGKILL');
  return { skipped: 'moto_server did not answer within 20 s' };
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
  const moto = await startMoto();
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
    // The same requests against moto, on a key and a blob of its own.
    let motoOps: Array<[string, string, object]> | undefined;
    if ('url' in moto) {
      const motoKms = new KMSClient({ endpoint: moto.url, region: 'us-east-1', credentials: CREDENTIALS, maxAttempts: 1 });
      const motoKey = (await motoKms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      const motoBlob = (await motoKms.send(new GenerateDataKeyCommand({ KeyId: motoKey, KeySpec: 'AES_256' }))).CiphertextBlob!;
      motoKms.destroy();
      motoOps = [
        ['GenerateDataKey', 'GenerateDataKey', { KeyId: motoKey, KeySpec: 'AES_256' }],
        ['Decrypt', 'Decrypt', { CiphertextBlob: Buffer.from(motoBlob).toString('base64') }],
        ['Encrypt 4 KiB', 'Encrypt', { KeyId: motoKey, Plaintext: plaintext4k }],
      ];
    }

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
    const gcmEnvelope = new Envelope(hsm, envelopeModes(hsm.capabilities(), 'AES_GCM_ENCRYPT'));
    const floors = {
      GenerateDataKey: await hsmFloor(hsm, () => envelope.sealNewDataKey(material, 32, context)),
      'GenerateDataKey (AES_GCM_ENCRYPT)': await hsmFloor(hsm, () => gcmEnvelope.sealNewDataKey(material, 32, context)),
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
    for (const [i, [name, target, body]] of ops.entries()) {
      for (const c of CONCURRENCY) {
        const g = await load(url, c, await signedRequest(url, target, body), gateway.child.pid!);
        const e = await load(`http://127.0.0.1:${floorPort}`, c, await signedRequest(`http://127.0.0.1:${floorPort}`, target, body), floor.pid!);
        const m = 'url' in moto && motoOps ? await loadClosing(moto.url, c, await signedRequest(moto.url, motoOps[i][1], motoOps[i][2])) : undefined;
        rows.push({ operation: name, concurrency: c, gateway: g, expressFloor: e, moto: m, hsmFloorOpsPerSecond: floors[name as keyof typeof floors].opsPerSecond });
        process.stderr.write(`${name} c=${c}: ${g.rps.toFixed(0)} req/s (express floor ${e.rps.toFixed(0)}${m ? `, moto ${m.rps.toFixed(0)}` : ''}), p99 ${g.p99} ms, errors ${g.errors}\n`);
      }
    }
    // The other data-key construction, on a gateway of its own, at the highest concurrency.
    const cMax = Math.max(...CONCURRENCY);
    const gcm = await variant({ QKMS_DATA_KEY_WRAP: 'AES_GCM_ENCRYPT' }, [cMax]);
    rows.push({ operation: 'GenerateDataKey (AES_GCM_ENCRYPT)', concurrency: cMax, gateway: gcm.rows[0], expressFloor: rows.find((r) => r.operation === 'GenerateDataKey' && r.concurrency === cMax)!.expressFloor, hsmFloorOpsPerSecond: floors['GenerateDataKey (AES_GCM_ENCRYPT)'].opsPerSecond });
    const cpuSaturated = await healthUnderLoad(url, await signedRequest(url, 'GenerateDataKey', ops[0][2]), gateway.child.pid!);
    const eventLoop = await variant({ QKMS_HSM_THREAD: 'false' }, CONCURRENCY);
    const slowHsm = await slowHsmTable();
    const stages = await cpuStages();

    const machine = {
      cpus: `${os.cpus().length} × ${os.cpus()[0].model}`, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version,
      softhsm: spawnText('softhsm2-util', ['--version']), date: new Date().toISOString(), durationSecondsPerRun: DURATION_S,
    };
    // The replicas table, on fresh tokens of its own, in the same run (replicas.ts).
    const replicas = await replicasTable();
    const motoNote = 'skipped' in moto
      ? `moto_server: skipped, ${moto.skipped}.`
      : 'moto_server: the same requests on a key of its own (it checks no signature and keeps keys in memory), from the same number of concurrent clients; it closes every connection after one answer, so they open a new one per request (autocannon would stop after the first).';
    const md = `${report({ machine, floors, rows, modes, eventLoop: eventLoop.rows, cpuSaturated, cpuSaturatedEventLoop: eventLoop.health, motoNote })}\n${slowHsmMarkdown(slowHsm)}\n\n${cpuStagesMarkdown(stages)}\n\n## Replicas and workers\n\n${replicasMarkdown(replicas)}\n`;
    fs.writeFileSync(path.join(__dirname, 'results/latest.md'), md);
    fs.writeFileSync(path.join(__dirname, 'results/latest.json'), JSON.stringify({ machine, floors, modes, rows, eventLoopRows: eventLoop.rows, healthUnderLoad: { cpuSaturated, eventLoopCpuSaturated: eventLoop.health }, slowHsm, stages, replicas, moto: motoNote }, null, 2));
    process.stdout.write(md);
  } finally {
    floor.kill('SIGTERM');
    if ('url' in moto) moto.stop();
    await gateway.stop();
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
  motoNote: string;
}

function report(r: Report): string {
  const m = r.machine;
  const lines = [
    `Machine: ${m.cpus}, ${m.memoryGiB} GiB, Node ${m.node}, SoftHSM ${m.softhsm}; ${m.durationSecondsPerRun} s per run; load generator on the same machine; ${m.date}`,
    '',
    'Gateway (default: PKCS#11 on the HSM thread) side by side with moto_server, the Express floor (the same stack answering a constant) and the raw PKCS#11 sequence on one thread (the HSM floor), same load, same run:',
    '',
    '| operation | c | gateway req/s | p50 ms | p99 ms | max ms | errors | gateway CPU ms/req | moto_server req/s | moto p99 ms | Express floor req/s | floor p99 ms | HSM floor ops/s (1 thread) | gateway ÷ HSM floor | p99 ÷ floor p99 |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const row of r.rows) {
    const g = row.gateway as Load;
    const e = row.expressFloor as Load;
    const m = row.moto as Load | undefined;
    lines.push(`| ${row.operation} | ${row.concurrency} | ${g.rps.toFixed(0)} | ${g.p50} | ${g.p99} | ${g.max} | ${g.errors} | ${g.cpuMsPerRequest} | ${m ? m.rps.toFixed(0) : '–'} | ${m ? m.p99 : '–'} | ${e.rps.toFixed(0)} | ${e.p99} | ${row.hsmFloorOpsPerSecond.toFixed(0)} | ${(g.rps / row.hsmFloorOpsPerSecond).toFixed(2)} | ${(g.p99 / Math.max(e.p99, 1)).toFixed(1)} |`);
  }
  lines.push('', r.motoNote);
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
