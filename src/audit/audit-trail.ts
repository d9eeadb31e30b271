import type { RequestFields } from './audit-record';

/**
 * Where the gateway's audit records go: the files in QKMS_DATA_DIR/audit (AuditLog) or, for
 * replicas sharing a database, PostgreSQL (PostgresAuditLog). Both verify their trail before they
 * open, and both answer `record` only once the record is durable.
 */
export interface AuditTrail {
  /** Resolves once the record is durable; rejects with KMSInternalException when it cannot be (fail-closed). */
  record(fields: RequestFields): Promise<void>;
  /** Commits what is queued; later records are refused. */
  close(): Promise<void>;
}
