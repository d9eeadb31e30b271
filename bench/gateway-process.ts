import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { createTestToken, removeTestToken, type TestToken } from '../test/support/softhsm-token';

export const CREDENTIALS = { accessKeyId: 'AKIAQKMSBENCH000001', secretAccessKey: 'bench-secret-0123456789abcdef' };
const ROOT = path.resolve(__dirname, '..');

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`process exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((r) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('connect', () => { socket.end(); r(true); }).on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`port ${port} never opened`);
}

/** The gateway listens while it starts (/ready 503 "starting"): wait until it can serve. */
async function waitForReady(port: number, child: ChildProcess): Promise<void> {
  await waitForPort(port, child);
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new Error(`process exited with ${child.exitCode}`);
    if (await fetch(`http://127.0.0.1:${port}/ready`).then((r) => r.ok, () => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the gateway on port ${port} never became ready`);
}

/**
 * The compiled gateway (dist/main.js) on a fresh SoftHSM2 token, as an operator would run it; `env`
 * adds QKMS_* settings. `entry` runs another script instead (node arguments), `dataDirIn` puts the
 * data dir elsewhere than the temp dir, `nodeArgs` are given to node (a profiler, say).
 */
export async function startGatewayProcess(
  env: Record<string, string> = {},
  { entry = [path.join(ROOT, 'dist/main.js')], dataDirIn = os.tmpdir(), nodeArgs = [] }: { entry?: string[]; dataDirIn?: string; nodeArgs?: string[] } = {},
): Promise<{ url: string; token: TestToken; dataDir: string; child: ChildProcess; stop(): Promise<void> }> {
  const token = createTestToken();
  const dataDir = fs.mkdtempSync(path.join(dataDirIn, 'qkms-bench-'));
  const port = await freePort();
  // BENCH_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", to profile the gateway under load.
  const envNodeArgs = process.env.BENCH_NODE_ARGS ? process.env.BENCH_NODE_ARGS.split(' ') : [];
  const child = spawn(process.execPath, [...envNodeArgs, ...nodeArgs, ...entry], {
    env: {
      ...process.env, SOFTHSM2_CONF: token.confPath, QKMS_PORT: String(port), QKMS_DATA_DIR: dataDir,
      QKMS_PKCS11_MODULE: token.modulePath, QKMS_PKCS11_TOKEN_LABEL: token.label, QKMS_PKCS11_PIN: token.pin,
      QKMS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId, QKMS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey, QKMS_LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
      ...(process.env.BENCH_HSM_THREAD ? { QKMS_HSM_THREAD: process.env.BENCH_HSM_THREAD } : {}),
      ...env,
    },
    // BENCH_GATEWAY_LOG=<file>: keep the gateway's log (QKMS_LOG_LEVEL from BENCH_LOG_LEVEL, default warn).
    stdio: ['ignore', process.env.BENCH_GATEWAY_LOG ? fs.openSync(process.env.BENCH_GATEWAY_LOG, 'a') : 'ignore', 'inherit'],
  });
  await waitForReady(port, child);
  return {
    url: `http://127.0.0.1:${port}`,
    token,
    dataDir,
    child,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      removeTestToken(token);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));

/** Busy and total CPU time of the whole machine so far (/proc/stat), in clock ticks. */
export function machineTicks(): { busy: number; total: number } {
  const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  return { busy: total - fields[3] - fields[4], total }; // idle and iowait
}

/** CPU seconds (user + system, all threads) the process has used so far (/proc/<pid>/stat). */
export function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** One SigV4-signed request, replayable by autocannon inside the 5-minute window. */
export async function signedRequest(url: string, target: string, body: object) {
  const u = new URL(url);
  const bytes = Buffer.from(JSON.stringify(body));
  const signer = new SignatureV4({ credentials: CREDENTIALS, region: 'us-east-1', service: 'kms', sha256: Hash.bind(null, 'sha256') });
  const req = await signer.sign(new HttpRequest({
    method: 'POST', protocol: 'http:', hostname: u.hostname, port: Number(u.port), path: '/',
    headers: { host: u.host, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': `TrentService.${target}` }, body: bytes,
  }));
  return { method: 'POST' as const, path: '/', headers: req.headers, body: bytes.toString() };
}
