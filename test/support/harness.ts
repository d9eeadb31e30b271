import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import pg from 'pg';
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
import { startChildGateway, type ChildGateway } from './child-gateway';
import { integration } from './integration-hooks';
import { sharedPostgres } from './postgres';
import { startBalancer, type Balancer } from './round-robin-balancer';

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
  /** In the replicated suite (QKMS_TEST_REPLICAS): the other replicas and the balancer in front. */
  replicas?: { others: ChildGateway[]; balancer: Balancer };
  /** The audit records of every replica: from the files of the SQLite deployment, or the store's table. */
  /** Every request record (from the files, or PostgreSQL in chain order: replica by replica). */
  auditRecords(): Promise<Array<{ requestId?: string; operation?: string; keyArn?: string; sourceIp?: string; status?: number; errorCode?: string | null }>>;
  close(): Promise<void>;
}

/**
 * `npm run test:replicas` (scripts/test-replicas.sh) runs the integration suites that use this
 * harness against QKMS_TEST_REPLICAS replicas sharing one PostgreSQL database and the run's token:
 * this process's gateway (whose deps, faults, clock and scheduler the tests drive) and `n - 1`
 * gateway processes, behind a round-robin balancer. KMS requests go to this process's replica only
 * while a test has scripted faults into its HSM or moved its clock (the others have neither).
 * Single: a TLS gateway (the balancer speaks plain HTTP) and a test that says why with `single`.
 */
function replicaCount(env: Record<string, string>, options: GatewayOptions): number {
  const n = Number(process.env.QKMS_TEST_REPLICAS ?? '1');
  if (n > 1 && options.single) console.log(`      (one gateway, not ${n} replicas: ${options.single})`);
  return env.QKMS_TLS_CERT || options.single ? 1 : Math.max(1, n);
}

export interface GatewayOptions {
  /** Why this gateway stays one process with its own SQLite store in the replicated suite. */
  single?: string;
}

/**
 * The tests' clock. Alone, it stands still until a test moves it. Among replicas it follows real
 * time, as theirs does, until a test moves it.
 */
function testClock(isLive: boolean): { now: Date; isMoved(): boolean } {
  let moved: Date | undefined;
  const frozen = new Date();
  return {
    get now() {
      return moved ?? (isLive ? new Date() : frozen);
    },
    set now(at: Date) {
      moved = at;
    },
    isMoved: () => moved !== undefined,
  };
}

/** A database per data dir: a test that restarts a gateway on its data dir finds its store again. */
const databases = new Map<string, Promise<string>>();
function databaseFor(dataDir: string): Promise<string> {
  if (!databases.has(dataDir)) databases.set(dataDir, sharedPostgres().then((pg) => pg.createDatabase('suite')));
  return databases.get(dataDir)!;
}

/**
 * A gateway in this process on port 0, over the given Hsm (wrapped in a FaultInjectingHsm), with
 * its own SQLite store in a temp dir. The Hsm is shared and not closed here: PKCS#11 is
 * initialised once per process.
 */
export async function startGateway(hsm: Hsm, env: Record<string, string> = {}, options: GatewayOptions = {}): Promise<Harness> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-gw-'));
  const replicas = replicaCount(env, options);
  const storeEnv: Record<string, string> = replicas > 1 ? { QKMS_STORE_URL: await databaseFor(env.QKMS_DATA_DIR ?? dataDir) } : {};
  const config = loadConfig({
    QKMS_DATA_DIR: dataDir,
    QKMS_PORT: '0',
    QKMS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
    QKMS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
    ...storeEnv,
    ...(replicas > 1 && { QKMS_REPLICA_ID: 'suite-1' }),
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
  const clock = testClock(replicas > 1);
  const gateway = await buildGateway(config, faults.hsm, logger, { clock: () => clock.now });
  const server = createServer(config, createApp(gateway.deps));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const ownUrl = `${config.tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const others = replicas > 1 ? await startOtherReplicas(replicas, { ...env, ...storeEnv }, () => gateway.scheduler.tick()) : undefined;
  const balancer = others && (await startBalancer([ownUrl, ...others.map((o) => o.url)], () => faults.armed || clock.isMoved()));
  const url = balancer?.url ?? ownUrl;
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
    replicas: others && balancer && { others, balancer },
    async auditRecords() {
      if (!config.storeUrl) {
        const dir = path.join(config.dataDir, 'audit');
        return fs.readdirSync(dir).sort().flatMap((f) => fs.readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)));
      }
      const db = new pg.Client({ connectionString: config.storeUrl });
      await db.connect();
      try {
        const { rows } = await db.query('SELECT request_id AS "requestId", operation, key_arn AS "keyArn", source_ip AS "sourceIp", status, error_code AS "errorCode" FROM audit_records ORDER BY replica_id, seq');
        return rows;
      } finally {
        await db.end();
      }
    },
    async close() {
      client.destroy();
      await balancer?.close();
      await Promise.all((others ?? []).map((o) => o.stop()));
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await gateway.close({ keepHsm: true }); // the Hsm is the suite's, shared
      recordAuditFiles(dataDir);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Replicas 2..n as gateway processes on the run's token. This process's gateway takes the scheduler
 * lease first (`takeLease`), so the scheduled work runs where the tests move the clock.
 */
async function startOtherReplicas(n: number, env: Record<string, string>, takeLease: () => Promise<unknown>): Promise<ChildGateway[]> {
  await takeLease();
  const { token } = integration();
  const dirs = Array.from({ length: n - 1 }, () => fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-replica-')));
  const settled = await Promise.allSettled(
    dirs.map((dir, i) =>
      startChildGateway({
        ...env,
        QKMS_REPLICA_ID: `suite-${i + 2}`,
        QKMS_DATA_DIR: dir,
        QKMS_PKCS11_MODULE: token.modulePath,
        QKMS_PKCS11_TOKEN_LABEL: token.label,
        QKMS_PKCS11_PIN: token.pin,
        SOFTHSM2_CONF: token.confPath,
      }),
    ),
  );
  const failed = settled.find((s) => s.status === 'rejected');
  const started = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  if (failed) {
    await Promise.all(started.map((gw) => gw.stop('SIGKILL')));
    throw (failed as PromiseRejectedResult).reason;
  }
  return started.map((gw, i) => ({
    ...gw,
    async stop(signal) {
      const code = await gw.stop(signal);
      fs.rmSync(dirs[i], { recursive: true, force: true });
      return code;
    },
  }));
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
