/**
 * npm run bench — the gateway on a fresh SoftHSM2 token, driven over HTTP with SigV4-signed
 * requests (each signed once and replayed inside the 5-minute window) by autocannon at several
 * concurrencies, and in the same run the two floors it is measured against:
 *   (a) the same PKCS#11 call sequence (Envelope over Pkcs11Hsm) in a tight in-process loop;
 *   (b) the same Express stack and load generator with a handler that returns a fixed response.
 * Prints the table and writes bench/results/latest.{md,json}. BENCH_DURATION_S (default 10) per run.
 */
import { fork } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { CreateKeyCommand, GenerateDataKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { Envelope } from '../src/domain/envelope';
import { encodeEncryptionContext } from '../src/domain/encryption-context';
import { unpackBlob } from '../src/domain/ciphertext-blob';
import { Pkcs11Hsm } from '../src/hsm/pkcs11/pkcs11-hsm';
import { CREDENTIALS, freePort, signedRequest, startGatewayProcess, waitForPort } from './gateway-process';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? '1,16,64').split(',').map(Number);

interface Load { rps: number; p50: number; p99: number; max: number; errors: number; requests: number }

async function load(url: string, connections: number, request: { method: 'POST'; path: string; headers: Record<string, string>; body: string }): Promise<Load> {
  const r = await autocannon({ url, connections, duration: DURATION_S, requests: [request] });
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max, errors: r.errors + r.timeouts + r.non2xx, requests: r.requests.total };
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

async function main(): Promise<void> {
  const gateway = await startGatewayProcess();
  const { url, token } = gateway;
  const floorPort = await freePort();
  const floor = fork(path.join(__dirname, 'express-floor.js'), [String(floorPort)], { stdio: 'ignore' });
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
    const hsm = await Pkcs11Hsm.open({ modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, sessions: 4 });
    const envelope = new Envelope(hsm, 'AES_KWP_HMAC');
    const context = encodeEncryptionContext({}, 8192);
    const parsed = unpackBlob(Buffer.from(blob));
    const floors = {
      GenerateDataKey: await hsmFloor(hsm, () => envelope.sealNewDataKey(keyId, 1, 32, context)),
      Decrypt: await hsmFloor(hsm, () => envelope.open(parsed, context)),
      'Encrypt 4 KiB': await hsmFloor(hsm, () => envelope.encrypt(keyId, 1, Buffer.from(plaintext4k, 'base64'), context)),
    };
    await hsm.close();

    const rows: Array<Record<string, unknown>> = [];
    for (const [name, target, body] of ops) {
      for (const c of CONCURRENCY) {
        const g = await load(url, c, await signedRequest(url, target, body));
        const e = await load(`http://127.0.0.1:${floorPort}`, c, await signedRequest(`http://127.0.0.1:${floorPort}`, target, body));
        rows.push({ operation: name, concurrency: c, gateway: g, expressFloor: e, hsmFloorOpsPerSecond: floors[name as keyof typeof floors].opsPerSecond });
        process.stderr.write(`${name} c=${c}: ${g.rps.toFixed(0)} req/s (express floor ${e.rps.toFixed(0)}), p99 ${g.p99} ms, errors ${g.errors}\n`);
      }
    }
    // /health while GenerateDataKey saturates the gateway at c=64 (issue #5 target: p99 <= 20 ms).
    const [, healthRun] = await Promise.all([
      load(url, 64, await signedRequest(url, 'GenerateDataKey', ops[0][2])),
      autocannon({ url: `${url}/health`, connections: 1, duration: DURATION_S }),
    ]);
    const healthUnderLoad = { p50: healthRun.latency.p50, p99: healthRun.latency.p99, max: healthRun.latency.max, errors: healthRun.errors + healthRun.non2xx };
    const machine = {
      cpus: `${os.cpus().length} × ${os.cpus()[0].model}`, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version,
      softhsm: spawnText('softhsm2-util', ['--version']), date: new Date().toISOString(), durationSecondsPerRun: DURATION_S,
    };
    const md = `${table(rows, floors, machine)}\n/health during GenerateDataKey at c=64: p50 ${healthUnderLoad.p50} ms, p99 ${healthUnderLoad.p99} ms, max ${healthUnderLoad.max} ms, errors ${healthUnderLoad.errors}\n`;
    fs.writeFileSync(path.join(__dirname, 'results/latest.md'), md);
    fs.writeFileSync(path.join(__dirname, 'results/latest.json'), JSON.stringify({ machine, floors, rows, healthUnderLoad }, null, 2));
    process.stdout.write(md);
  } finally {
    floor.kill('SIGTERM');
    await gateway.stop();
  }
}

function spawnText(cmd: string, args: string[]): string {
  return require('node:child_process').execFileSync(cmd, args, { encoding: 'utf8' }).trim();
}

function table(rows: Array<Record<string, any>>, floors: Record<string, { opsPerSecond: number; callsPerOp: Record<string, number> }>, machine: Record<string, unknown>): string {
  const lines = [
    `Machine: ${machine.cpus}, ${machine.memoryGiB} GiB, Node ${machine.node}, SoftHSM ${machine.softhsm}; ${machine.durationSecondsPerRun} s per run; ${machine.date}`,
    '',
    '| operation | c | gateway req/s | p50 ms | p99 ms | max ms | errors | Express floor req/s | floor p99 ms | gateway ÷ Express floor | p99 ÷ floor p99 | HSM floor ops/s (1 thread) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const g = r.gateway as Load;
    const e = r.expressFloor as Load;
    lines.push(`| ${r.operation} | ${r.concurrency} | ${g.rps.toFixed(0)} | ${g.p50} | ${g.p99} | ${g.max} | ${g.errors} | ${e.rps.toFixed(0)} | ${e.p99} | ${(g.rps / e.rps).toFixed(2)} | ${(g.p99 / Math.max(e.p99, 1)).toFixed(1)} | ${r.hsmFloorOpsPerSecond.toFixed(0)} |`);
  }
  lines.push('', 'PKCS#11 calls per operation (floor loop; no C_OpenSession, C_Login or C_FindObjects per request):', '');
  for (const [op, f] of Object.entries(floors)) {
    lines.push(`- ${op}: ${Object.entries(f.callsPerOp).map(([k, v]) => `${k} ${Number(v).toFixed(2)}`).join(', ')}`);
  }
  return `${lines.join('\n')}\n`;
}

void main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
