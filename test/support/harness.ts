import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { KMSClient } from '@aws-sdk/client-kms';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { createApp } from '../../src/app';
import { loadConfig, type Config } from '../../src/config/load-config';
import { buildGateway } from '../../src/gateway';
import type { Hsm } from '../../src/hsm/hsm';
import { FaultInjectingHsm } from '../../src/hsm/fault-injecting-hsm';
import { recordLog, recordSecretsMiddleware, registerSecret } from './secrets';
import { createLogger } from '../../src/logging/logger';
import { createServer } from '../../src/server';
import type { GatewayDeps } from '../../src/operations/context';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

export const TEST_CREDENTIALS = { accessKeyId: 'AKIAQKMSTESTADMIN01', secretAccessKey: 'test-secret-access-key-0123456789' };
registerSecret(TEST_CREDENTIALS.secretAccessKey);

/** The audit trail is a log too: its files join the suite's log scan. */
export function recordAuditFiles(dataDir: string): void {
  const dir = path.join(dataDir, 'audit');
  if (!fs.existsSync(dir)) return;
  for (const f of fs.readdirSync(dir)) recordLog(fs.readFileSync(path.join(dir, f), 'utf8'));
}

export interface Harness {
  url: string;
  client: KMSClient;
  deps: GatewayDeps;
  config: Config;
  faults: FaultInjectingHsm;
  /** Every log line written so far, as text (to prove secrets never reach it). */
  logText(): string;
  /** A mutable clock: tests move time instead of sleeping. */
  clock: { now: Date };
  /** Runs due deletions and rotations at the current clock. */
  tick(): Promise<{ deleted: string[]; rotated: string[] }>;
  close(): Promise<void>;
}

/**
 * A gateway in this process on port 0, over the given Hsm (wrapped in a FaultInjectingHsm), with
 * its own SQLite store in a temp dir. The Hsm is shared and not closed here: PKCS#11 is
 * initialised once per process.
 */
export async function startGateway(hsm: Hsm, env: Record<string, string> = {}): Promise<Harness> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-gw-'));
  const config = loadConfig({
    QKMS_DATA_DIR: dataDir,
    QKMS_PORT: '0',
    QKMS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
    QKMS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
    ...env,
  });
  const logStream = new PassThrough();
  const logChunks: string[] = [];
  logStream.on('data', (c: Buffer) => {
    logChunks.push(c.toString());
    recordLog(c.toString());
  });
  const logger = createLogger({ level: 'debug', stream: logStream });
  const faults = new FaultInjectingHsm(hsm);
  const clock = { now: new Date() };
  const gateway = await buildGateway(config, faults.hsm, logger, { clock: () => clock.now });
  const server = createServer(config, createApp(gateway.deps));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `${config.tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = new KMSClient({ endpoint: url, region: config.region, credentials: TEST_CREDENTIALS, maxAttempts: 1 });
  recordSecretsMiddleware(client);
  return {
    url,
    client,
    deps: gateway.deps,
    config,
    faults,
    clock,
    tick: () => gateway.scheduler.tick(),
    logText: () => logChunks.join(''),
    async close() {
      client.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await gateway.close({ keepHsm: true }); // the Hsm is the suite's, shared
      recordAuditFiles(dataDir);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface RawCallOptions {
  headers?: Record<string, string>;
  /** Sign with these instead of the admin test credential; `false` sends no Authorization. */
  credentials?: { accessKeyId: string; secretAccessKey: string } | false;
  signingDate?: Date;
  region?: string;
  /** Headers the signer leaves out of SignedHeaders (a careless or hostile client). */
  unsignedHeaders?: string[];
  /** Changes the request after signing (e.g. alter the body) to prove the signature covers it. */
  tamper?: (req: { headers: Record<string, string>; body: Buffer }) => void;
}

/**
 * A raw POST as a client would send it, SigV4-signed by @smithy/signature-v4 like the SDKs do, for
 * what the SDK cannot send (bad JSON, odd headers, mis-signed requests). node:http, not fetch, so
 * the Host header is exactly the one signed.
 */
export async function rawCall(url: string, target: string | undefined, body: string | Buffer, options: RawCallOptions = {}) {
  const u = new URL(url);
  let headers: Record<string, string> = {
    host: u.host,
    'content-type': 'application/x-amz-json-1.1',
    ...(target && { 'x-amz-target': target }),
    ...options.headers,
  };
  const bytes = Buffer.from(body);
  if (options.credentials !== false) {
    const signer = new SignatureV4({
      credentials: options.credentials ?? TEST_CREDENTIALS,
      region: options.region ?? 'us-east-1',
      service: 'kms',
      sha256: Hash.bind(null, 'sha256'),
    });
    const signed = await signer.sign(new HttpRequest({ method: 'POST', protocol: 'http:', hostname: u.hostname, port: Number(u.port), path: '/', headers, body: bytes }), {
      signingDate: options.signingDate,
      unsignableHeaders: new Set(options.unsignedHeaders ?? []),
    });
    headers = signed.headers;
  }
  const req = { headers, body: bytes };
  options.tamper?.(req);
  return new Promise<{ status: number; headers: Headers; text: string; json?: Record<string, any> }>((resolve, reject) => {
    const r = http.request(url, { method: 'POST', headers: { ...req.headers, 'content-length': String(req.body.length) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h.set(k, v);
        resolve({ status: res.statusCode!, headers: h, text, json: text ? (JSON.parse(text) as Record<string, any>) : undefined });
      });
    });
    r.on('error', reject);
    r.end(req.body);
  });
}
