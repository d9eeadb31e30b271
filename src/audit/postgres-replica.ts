import os from 'node:os';
import { Client } from 'pg';
import { lockKey, REPLICA_ID } from './postgres-audit-schema';

/** A database that stops answering fails the batch (fail-closed) instead of holding every answer. */
const AUDIT_QUERY_TIMEOUT_MS = 10000;
/** Replicas (or QKMS_WORKERS processes) per host that get an id without QKMS_REPLICA_ID. */
const MAX_HOST_SLOTS = 64;

/** The audit connection's name in pg_stat_activity. */
export const AUDIT_APPLICATION_NAME = 'qkms-audit';

/**
 * The connection one replica writes its chain on. It stays open for the replica's life: it holds
 * the replica id's lease (a session advisory lock), which ends with the connection, also when
 * the process is killed. A server whose default is synchronous_commit=off would acknowledge a
 * batch before it is durable: this connection asks for on.
 */
export async function connectAuditDatabase(url: string, onError: (err: Error) => void): Promise<Client> {
  const client = new Client({ connectionString: url, application_name: AUDIT_APPLICATION_NAME, query_timeout: AUDIT_QUERY_TIMEOUT_MS, connectionTimeoutMillis: AUDIT_QUERY_TIMEOUT_MS });
  // Without a listener an error on an idle connection (the server restarted) ends the process.
  client.on('error', onError);
  try {
    await client.connect();
    const { rows } = await client.query<{ synchronous_commit: string }>('SHOW synchronous_commit');
    if (rows[0]?.synchronous_commit === 'off') await client.query('SET synchronous_commit TO on');
    return client;
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
}

/** The replica id is held by another live process: two writers must never share one chain. */
export class ReplicaIdInUse extends Error {}

/** Takes the lease on `replicaId` for this connection; false when another connection holds it. */
export async function leaseReplicaId(client: Client, replicaId: string): Promise<boolean> {
  const { rows } = await client.query<{ held: boolean }>('SELECT pg_try_advisory_lock($1) AS held', [lockKey(`replica\n${replicaId}`)]);
  return rows[0]?.held === true;
}

/**
 * QKMS_REPLICA_ID when set, refused while another process holds it. Unset, the first free of
 * `<hostname>-1`, `<hostname>-2`, …: a restarted replica (or worker) takes its chain up again
 * after its start-up verified it, and processes on one host never share one.
 */
export async function claimReplicaId(client: Client, configured: string | undefined): Promise<string> {
  if (configured !== undefined) {
    if (!REPLICA_ID.test(configured)) throw new Error(`QKMS_REPLICA_ID must match ${REPLICA_ID}`);
    if (!(await leaseReplicaId(client, configured))) throw new ReplicaIdInUse(`the audit chain of replica id ${configured} is being written by another live gateway process: give each replica its own QKMS_REPLICA_ID`);
    return configured;
  }
  const host = os.hostname().replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 48) || 'replica';
  for (let slot = 1; slot <= MAX_HOST_SLOTS; slot++) {
    const id = `${host}-${slot}`;
    if (await leaseReplicaId(client, id)) return id;
  }
  throw new ReplicaIdInUse(`all ${MAX_HOST_SLOTS} audit chains of host ${host} are being written by live processes: set QKMS_REPLICA_ID`);
}
