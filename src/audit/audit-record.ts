import crypto from 'node:crypto';
import { internalKeyRef } from '../domain/key-repository';

/**
 * Audit records, one JSON object per line, hash-chained:
 *   hash = SHA-256( JSON of the record without `hash`, `prev` included )
 * where `prev` is the previous record's hash (64 zeros for the very first) and the fields are
 * serialised in the order written here. Editing, deleting or reordering a record breaks the chain;
 * rewriting the chain after an edit is caught by the next checkpoint, whose `mac` is an HMAC made
 * in the HSM over the head it covers (see checkpointMessage).
 */
export const GENESIS = '0'.repeat(64);

export interface RequestFields {
  time: string;
  requestId: string;
  operation: string | null;
  principal: string | null;
  accessKeyId: string | null;
  sourceIp: string | null;
  keyArn: string | null;
  status: number;
  errorCode: string | null;
}

export type AuditRecord =
  | ({ seq: number; type: 'request' } & RequestFields & { prev: string; hash: string })
  | { seq: number; type: 'checkpoint'; time: string; coversSeq: number; coversHash: string; mac: string; prev: string; hash: string };

export function chainHash(recordWithoutHash: object): string {
  return crypto.createHash('sha256').update(JSON.stringify(recordWithoutHash)).digest('hex');
}

/** The bytes a checkpoint's HSM HMAC covers. */
export function checkpointMessage(coversSeq: number, coversHash: string): Buffer {
  return Buffer.from(`qkms-audit-checkpoint-v1\n${coversSeq}\n${coversHash}`);
}

/** The HSM key that signs checkpoints (label qkms-internal/audit-mac). */
export const AUDIT_MAC_LABEL = internalKeyRef('audit-mac');
