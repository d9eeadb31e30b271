import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { startChildGateway, type ChildGateway } from './child-gateway';
import { sharedPostgres } from './postgres';
import { createTestToken, removeTestToken, type TestToken } from './softhsm-token';

/** Gateway replicas sharing one fresh PostgreSQL database and one fresh SoftHSM2 token, each with its own data dir. */
export interface Deployment {
  url: string;
  token: TestToken;
  replicas: Map<string, ChildGateway>;
  /** Starts replicas (given ids) at the same moment. */
  start(ids: string[], extraEnv?: Record<string, string>): Promise<ChildGateway[]>;
  query<R extends object>(text: string, values?: unknown[]): Promise<R[]>;
  /** How many token objects carry the CKA_ID (hex), read with pkcs11-tool: a view independent of the gateways. */
  objectsWithId(id: string): number;
  close(): Promise<void>;
}

export async function freshDeployment(env: Record<string, string> = {}): Promise<Deployment> {
  const url = await (await sharedPostgres()).createDatabase('replicas');
  // createTestToken points this process's SOFTHSM2_CONF at the new token; the run's token stays ours.
  const runConf = process.env.SOFTHSM2_CONF;
  const token = createTestToken();
  if (runConf === undefined) delete process.env.SOFTHSM2_CONF;
  else process.env.SOFTHSM2_CONF = runConf;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-replicas-'));
  const replicas = new Map<string, ChildGateway>();
  const db = new Client({ connectionString: url });
  await db.connect();
  const envOf = (id: string) => ({
    QKMS_STORE_URL: url, QKMS_REPLICA_ID: id, QKMS_DATA_DIR: path.join(dir, id),
    QKMS_PKCS11_MODULE: token.modulePath, QKMS_PKCS11_TOKEN_LABEL: token.label, QKMS_PKCS11_PIN: token.pin, SOFTHSM2_CONF: token.confPath,
    ...env,
  });
  return {
    url, token, replicas,
    async start(ids, extraEnv = {}) {
      const started = await Promise.allSettled(ids.map((id) => startChildGateway({ ...envOf(id), ...extraEnv })));
      started.forEach((s, i) => s.status === 'fulfilled' && replicas.set(ids[i], s.value));
      const failed = started.find((s) => s.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      return started.map((s) => (s as PromiseFulfilledResult<ChildGateway>).value);
    },
    async query(text, values = []) {
      return (await db.query(text, values)).rows;
    },
    objectsWithId(id) {
      const listing = spawnSync('pkcs11-tool', ['--module', token.modulePath, '--token-label', token.label, '--login', '--pin', token.pin, '--list-objects'], {
        env: { ...process.env, SOFTHSM2_CONF: token.confPath },
        encoding: 'utf8',
      });
      if (listing.status !== 0) throw new Error(`pkcs11-tool failed: ${listing.stderr}`);
      return [...listing.stdout.matchAll(/^\s+ID:\s+([0-9a-f]+)$/gm)].filter((m) => m[1] === id).length;
    },
    async close() {
      for (const gw of replicas.values()) await gw.stop('SIGKILL').catch(() => undefined);
      await db.end();
      removeTestToken(token);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
