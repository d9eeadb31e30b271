import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { freePort } from './free-port';

/** Debian's PostgreSQL 15 server binaries (package postgresql-15). */
const BIN = '/usr/lib/postgresql/15/bin';
const SERVER_USER = 'postgres';

export interface PostgresCluster {
  /** A new, empty database of its own; its connection URL. */
  createDatabase(prefix?: string): Promise<string>;
  stop(): void;
}

/**
 * Why this machine cannot start a throwaway cluster, or undefined when it can: the server refuses
 * to run as root, so initdb and pg_ctl run as the `postgres` user, which only root can switch to.
 */
export function postgresUnavailable(): string | undefined {
  if (!fs.existsSync(path.join(BIN, 'initdb')) || !fs.existsSync(path.join(BIN, 'pg_ctl'))) {
    return `PostgreSQL unavailable: missing Debian package postgresql-15 (run scripts/ensure-postgres.sh as root)`;
  }
  if (process.getuid?.() !== 0) return 'PostgreSQL unavailable: starting a throwaway cluster needs root (to run initdb and pg_ctl as the postgres user)';
  if (spawnSync('id', ['-u', SERVER_USER]).status !== 0) return `PostgreSQL unavailable: no ${SERVER_USER} user (the postgresql-15 package creates it)`;
  return undefined;
}

/** Skips the calling suite or test, saying why, where no throwaway cluster can start (`this` of a mocha hook or test). */
export function skipWithoutPostgres(ctx: Mocha.Context): void {
  const unavailable = postgresUnavailable();
  if (!unavailable) return;
  console.log(`      skipped: ${unavailable}`);
  ctx.skip();
}

let shared: PostgresCluster | undefined;

/**
 * One cluster per test run, started on first use; `stopSharedPostgres` (the integration root
 * hook's afterAll) or the process's exit removes it. Suites isolate themselves by database.
 */
export async function sharedPostgres(): Promise<PostgresCluster> {
  shared ??= await startPostgres();
  return shared;
}

export function stopSharedPostgres(): void {
  shared?.stop();
  shared = undefined;
}

/**
 * A fresh cluster in a temp dir owned by the postgres user, on a free 127.0.0.1 port, trust auth
 * for TCP from loopback only, no system service. fsync is off unless `durable` (the benchmark's):
 * a test cluster never outlives a crash of its machine, and the suite's writes are many.
 */
export async function startPostgres({ durable = false }: { durable?: boolean } = {}): Promise<PostgresCluster> {
  const unavailable = postgresUnavailable();
  if (unavailable) throw new Error(unavailable);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-pg-'));
  const data = path.join(dir, 'data');
  const asServer = (cmd: string, args: string[]) => execFileSync('runuser', ['-u', SERVER_USER, '--', path.join(BIN, cmd), ...args], { stdio: 'pipe', cwd: dir });
  let isStopped = false;
  const stop = () => {
    if (isStopped) return;
    isStopped = true;
    spawnSync('runuser', ['-u', SERVER_USER, '--', path.join(BIN, 'pg_ctl'), '-D', data, '-m', 'immediate', '-w', 'stop'], { stdio: 'ignore' });
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', stop);
  try {
    execFileSync('chown', [`${SERVER_USER}:`, dir]);
    asServer('initdb', ['-D', data, '-U', SERVER_USER, '--auth=trust', '--encoding=UTF8', '--no-sync', '--no-instructions']);
    const port = await startOnFreePort((p) =>
      asServer('pg_ctl', ['-D', data, '-l', path.join(dir, 'server.log'), '-w', '-t', '30', '-o', `-p ${p} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=${durable ? 'on' : 'off'} -c max_connections=200`, 'start']),
    );
    const base = `postgres://${SERVER_USER}@127.0.0.1:${port}`;
    return {
      async createDatabase(prefix = 'qkms') {
        const name = `${prefix}_${crypto.randomBytes(4).toString('hex')}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
        const admin = new Client({ connectionString: `${base}/postgres` });
        await admin.connect();
        try {
          await admin.query(`CREATE DATABASE ${name}`);
        } finally {
          await admin.end();
        }
        return `${base}/${name}`;
      },
      stop() {
        process.off('exit', stop);
        stop();
      },
    };
  } catch (err) {
    const log = path.join(dir, 'server.log');
    const detail = fs.existsSync(log) ? `\n${fs.readFileSync(log, 'utf8')}` : '';
    stop();
    process.off('exit', stop);
    throw new Error(`could not start a throwaway PostgreSQL cluster: ${(err as Error).message}${detail}`, { cause: err });
  }
}

/** A port that was free a moment ago may be taken by the time the server binds it: a few tries. */
async function startOnFreePort(start: (port: number) => void): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      start(port);
      return port;
    } catch (err) {
      if (attempt === 3) throw err;
    }
  }
}

