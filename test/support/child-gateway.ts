import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { KMSClient } from '@aws-sdk/client-kms';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { recordAuditFiles, TEST_CREDENTIALS } from './harness';
import { recordLog, recordSecretsMiddleware, registerSecret } from './secrets';

const ROOT = path.resolve(__dirname, '../..');

export interface ChildGateway {
  url: string;
  client: KMSClient;
  output(): string;
  /** SIGTERM by default; SIGKILL for a process that no longer answers. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * `src/main.ts` in its own process, as `npm start` runs it, with only the given QKMS_* settings. Its
 * output joins the suite's secret scan unless `isLogRecorded` is false (a long soak keeps its logs on disk).
 */
export function spawnGateway(env: Record<string, string>, { isLogRecorded = true } = {}): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('QKMS_') && k !== 'SOFTHSM2_CONF'));
  const child = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), path.join(ROOT, 'src/main.ts')], {
    cwd: ROOT,
    env: { ...clean, QKMS_PORT: '0', QKMS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId, QKMS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  if (isLogRecorded) void exited.then(() => recordLog(out));
  return { child, output: () => out, exited };
}

/** The address from a gateway's "listening" line, once it has logged it. */
export function listeningAddress(output: string): string | undefined {
  return /"address":"([^"]+)"/.exec(output)?.[1];
}

/** Starts a gateway process and waits for its "listening" and then its "ready" line (it listens while it starts). */
export async function startChildGateway(env: Record<string, string>): Promise<ChildGateway> {
  const { child, output, exited } = spawnGateway(env);
  const deadline = Date.now() + 20000;
  let address: string | undefined;
  while (!address || !/"message":"ready"/.test(output())) {
    address = listeningAddress(output());
    if (child.exitCode !== null) throw new Error(`gateway exited ${child.exitCode}: ${output()}`);
    if (Date.now() > deadline) throw new Error(`gateway did not start: ${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const url = `http://${address}`;
  const client = new KMSClient({ endpoint: url, region: 'us-east-1', credentials: TEST_CREDENTIALS, maxAttempts: 1 });
  recordSecretsMiddleware(client);
  return {
    url,
    client,
    output,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      child.kill(signal);
      const code = await exited;
      client.destroy(); // after the exit: in-flight requests of the client may still be answered
      recordLog(output());
      const dataDir = env.QKMS_DATA_DIR;
      if (dataDir && fs.existsSync(path.join(dataDir, 'pin'))) registerSecret(fs.readFileSync(path.join(dataDir, 'pin'), 'utf8'));
      if (dataDir) recordAuditFiles(dataDir);
      return code;
    },
  };
}

/**
 * A gateway process with a fault file, for one test: `setFaults` waits for the plan to be re-read
 * (pass `false` to only write it, for a thread that reads it when it starts); exit 0 is checked.
 */
export async function withFaultyGateway(env: Record<string, string>, body: (gw: ChildGateway, setFaults: (rules: object[], waitForReread?: boolean) => Promise<void>) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-faulty-'));
  const faults = path.join(dir, 'faults.json');
  fs.writeFileSync(faults, '[]');
  const gw = await startChildGateway({ QKMS_DATA_DIR: path.join(dir, 'data'), QKMS_FAULTS_FILE: faults, ...env });
  try {
    await body(gw, async (rules, waitForReread = true) => {
      fs.writeFileSync(faults, JSON.stringify(rules));
      if (waitForReread) await new Promise((r) => setTimeout(r, 1200)); // re-read at most once a second
    });
  } finally {
    assert.equal(await gw.stop(), 0);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
