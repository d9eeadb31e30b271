import crypto from 'node:crypto';
import { Client } from 'pg';
import type { ReplicaCoordination } from '../domain/replica-coordination';

/** A database that stops answering fails the call (the scheduler skips a run; a start fails) instead of hanging it. */
const QUERY_TIMEOUT_MS = 10000;

/** The coordination connection's name in pg_stat_activity. */
export const COORDINATION_APPLICATION_NAME = 'qkms-coordination';

/** A 64-bit advisory lock key for a name, as the decimal string pg passes for bigint. */
function lockKey(name: string): string {
  return crypto.createHash('sha256').update(`qkms-coordination\n${name}`).digest().readBigInt64BE(0).toString();
}

const SCHEDULER_LEASE = lockKey('scheduler');
const DEPLOYMENT_LOCK = lockKey('deployment');
const ownerLease = (owner: string) => lockKey(`intent-owner\n${owner}`);
/** The channel of announceKeyChange. */
const KEY_CHANGES = 'qkms_key_changes';

/**
 * One connection per replica, for the replica's life, holding session advisory locks: the lease
 * on its owner id (while it is held, other replicas leave this one's intents alone) and, on one
 * replica at a time, the scheduler's. Both end with the connection — closed, broken, or its
 * process killed — so a dead replica's leases are free at once. A broken connection is replaced
 * on the next call, which takes the owner lease again; the scheduler's is then taken anew like any
 * replica's, so two schedulers never run on one lease.
 */
export class PostgresCoordination implements ReplicaCoordination {
  readonly ownerId = crypto.randomUUID();
  /** Undefined once broken or before the first call: the next call connects. */
  private client?: Client;
  private isLeaseHeld = false;
  private isClosed = false;
  private readonly keyChangeListeners: Array<() => void> = [];
  private connecting?: Promise<Client>;

  private constructor(
    private readonly url: string,
    private readonly onLost: (err: Error) => void,
  ) {}

  /** Connects and takes the owner lease: a database that cannot be reached fails the start. */
  static async open(url: string, onLost: (err: Error) => void): Promise<PostgresCoordination> {
    const coordination = new PostgresCoordination(url, onLost);
    await coordination.connection();
    return coordination;
  }

  async ifOwnerGone(owner: string | undefined, repair: () => Promise<void>): Promise<boolean> {
    if (owner === this.ownerId) return false;
    if (owner === undefined) {
      // Recorded by a release before owners: those rolled back every intent at start, so none was live then either.
      await repair();
      return true;
    }
    const c = await this.connection();
    const lease = ownerLease(owner);
    if (!(await tryLock(c, lease))) return false;
    try {
      await repair();
      return true;
    } finally {
      await c.query('SELECT pg_advisory_unlock($1)', [lease]).catch((err: Error) => this.lost(err));
    }
  }

  async holdsSchedulerLease(): Promise<boolean> {
    try {
      const c = await this.connection();
      if (this.isLeaseHeld) {
        await c.query('SELECT 1'); // the session, and with it the lock, is still there
        return true;
      }
      this.isLeaseHeld = await tryLock(c, SCHEDULER_LEASE);
      return this.isLeaseHeld;
    } catch (err) {
      this.lost(err as Error);
      return false;
    }
  }

  async exclusively<T>(fn: () => Promise<T>): Promise<T> {
    const c = await this.connection();
    await c.query('SELECT pg_advisory_lock($1)', [DEPLOYMENT_LOCK]);
    try {
      return await fn();
    } finally {
      await c.query('SELECT pg_advisory_unlock($1)', [DEPLOYMENT_LOCK]).catch((err: Error) => this.lost(err));
    }
  }

  async announceKeyChange(): Promise<void> {
    const c = await this.connection();
    await c.query('SELECT pg_notify($1, $2)', [KEY_CHANGES, this.ownerId]);
  }

  onKeyChange(listener: () => void): void {
    this.keyChangeListeners.push(listener);
  }

  private keyChanged(): void {
    for (const listener of this.keyChangeListeners) listener();
  }

  async close(): Promise<void> {
    this.isClosed = true;
    this.isLeaseHeld = false;
    await this.client?.end().catch(() => undefined);
    this.client = undefined;
  }

  /** Callers that find the connection gone at once share one reconnect (two would contend for the owner lease). */
  private async connection(): Promise<Client> {
    if (this.client) return this.client;
    if (this.isClosed) throw new Error('the coordination connection is closed');
    this.connecting ??= this.connect().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async connect(): Promise<Client> {
    const client = new Client({ connectionString: this.url, application_name: COORDINATION_APPLICATION_NAME, query_timeout: QUERY_TIMEOUT_MS, connectionTimeoutMillis: QUERY_TIMEOUT_MS });
    // Without a listener an error on the idle connection (the server restarted) ends the process.
    client.on('error', (err) => {
      if (this.client === client) this.lost(err);
    });
    try {
      await client.connect();
      // Free unless a replica that found this connection gone is rolling back this one's intents:
      // then this one waits for the next call (its activations of those intents fail meanwhile).
      if (!(await tryLock(client, ownerLease(this.ownerId)))) throw new Error('another replica is rolling back the intents of this one (its coordination connection was lost)');
      // Other replicas' key changes, received on this connection while it lives.
      client.on('notification', (n) => n.channel === KEY_CHANGES && this.keyChanged());
      await client.query(`LISTEN ${KEY_CHANGES}`);
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    this.client = client;
    this.keyChanged(); // announcements made while there was no connection are lost: forget what may be stale
    return client;
  }

  private lost(err: Error): void {
    const client = this.client;
    this.client = undefined;
    this.isLeaseHeld = false;
    this.keyChanged();
    void client?.end().catch(() => undefined);
    if (!this.isClosed) this.onLost(err);
  }
}

async function tryLock(c: Client, key: string): Promise<boolean> {
  const { rows } = await c.query<{ held: boolean }>('SELECT pg_try_advisory_lock($1) AS held', [key]);
  return rows[0]?.held === true;
}
