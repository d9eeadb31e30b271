import crypto from 'node:crypto';
import type { ClientBase } from 'pg';

/**
 * The audit trail of replicas sharing a PostgreSQL database: one hash chain per replica id.
 *   audit_chains   one row per chain: its anchor (the last committed seq and hash) and
 *                  mac = HMAC-SHA-256 in the HSM over anchorMessage
 *   audit_batches  one row per committed batch: first seq, count, prev, head and
 *                  mac = HMAC-SHA-256 in the HSM over batchMessage
 *   audit_records  the records, hashed exactly as in the files (audit-record.ts requestRecord)
 * A batch's records, its batch row and its chain's anchor are written in one transaction.
 * Versioned on their own (audit_schema_version), so they do not depend on the key store's
 * migrations. docs/crypto.md "Audit trail in PostgreSQL" has the guarantees and their limits.
 */
const MIGRATIONS: string[][] = [
  [
    `CREATE TABLE audit_chains (
       replica_id text PRIMARY KEY,
       seq bigint NOT NULL,
       head text NOT NULL,
       mac text NOT NULL,
       created_at timestamptz NOT NULL DEFAULT now(),
       updated_at timestamptz NOT NULL DEFAULT now())`,
    `CREATE TABLE audit_batches (
       replica_id text NOT NULL,
       first_seq bigint NOT NULL,
       count integer NOT NULL,
       prev text NOT NULL,
       head text NOT NULL,
       mac text NOT NULL,
       committed_at timestamptz NOT NULL DEFAULT now(),
       PRIMARY KEY (replica_id, first_seq))`,
    // time stays text: the chain hashes the exact string the gateway wrote.
    `CREATE TABLE audit_records (
       replica_id text NOT NULL,
       seq bigint NOT NULL,
       time text NOT NULL,
       request_id text NOT NULL,
       operation text,
       principal text,
       access_key_id text,
       source_ip text,
       key_arn text,
       status integer NOT NULL,
       error_code text,
       prev text NOT NULL,
       hash text NOT NULL,
       PRIMARY KEY (replica_id, seq))`,
  ],
];

export const AUDIT_SCHEMA_VERSION = MIGRATIONS.length;

/** A replica id names its chain and is bound into every MAC: no newline, nothing to escape. */
export const REPLICA_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** The bytes a batch row's HSM HMAC covers: its own domain, and the chain it belongs to. */
export function batchMessage(replicaId: string, b: { first: number; count: number; prev: string; head: string }): Buffer {
  return Buffer.from(`qkms-audit-pg-batch-v1\n${replicaId}\n${b.first}\n${b.count}\n${b.prev}\n${b.head}`);
}

/** The bytes a chain's anchor HMAC covers; a batch row or another chain's anchor never passes for it. */
export function anchorMessage(replicaId: string, a: { seq: number; head: string }): Buffer {
  return Buffer.from(`qkms-audit-pg-anchor-v1\n${replicaId}\n${a.seq}\n${a.head}`);
}

/** A 64-bit advisory lock key for a name, as the decimal string pg passes for bigint. */
export function lockKey(name: string): string {
  return crypto.createHash('sha256').update(`qkms-audit\n${name}`).digest().readBigInt64BE(0).toString();
}

/**
 * Creates or upgrades the audit tables, once, whichever replica starts first: the transaction
 * holds an advisory lock, so replicas starting together wait for each other instead of racing
 * on CREATE TABLE. Tables written by a newer release are refused.
 */
export async function migrateAuditSchema(client: ClientBase): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [lockKey('schema')]);
    await client.query('CREATE TABLE IF NOT EXISTS audit_schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
    const { rows } = await client.query<{ version: number | null }>('SELECT max(version) AS version FROM audit_schema_version');
    const at = rows[0]?.version ?? 0;
    if (at > AUDIT_SCHEMA_VERSION) {
      throw new Error(`the audit tables are at schema ${at}, written by a newer release (this one knows ${AUDIT_SCHEMA_VERSION}): refusing to write them`);
    }
    for (let version = at + 1; version <= AUDIT_SCHEMA_VERSION; version++) {
      for (const statement of MIGRATIONS[version - 1]) await client.query(statement);
      await client.query('INSERT INTO audit_schema_version (version) VALUES ($1)', [version]);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
