import crypto from 'node:crypto';
import { internalKeyRef } from '../domain/key-repository';
import fs from 'node:fs';
import path from 'node:path';

/**
 * The audit trail: segment files `audit-NNNNNNNN.jsonl`, one JSON object per line. Records are
 * hash-chained:
 *   hash = SHA-256( JSON of the record without `hash`, `prev` included )
 * where `prev` is the previous record's hash (64 zeros for the very first) and the fields are
 * serialised in the order written here. Records are written in batches, each a single write of
 *   {"type":"batch","first","count","prev","head","mac"}   the batch header, not in the chain
 *   `count` records, seq first … first+count-1
 * where `mac` is an HMAC made in the HSM over batchMessage: an unfinished batch (a crash in the
 * middle of its write) is recognisable by its signed header, and nobody without the HSM can add a
 * record. The end of the last committed batch is anchored outside the files (anchorMessage, see
 * AuditAnchor in the key store). Trails written before batches existed hold `checkpoint` records
 * inside the chain instead (checkpointMessage); they still verify.
 * docs/crypto.md "Audit trail" has the guarantees and their limits.
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

export interface BatchHeader {
  type: 'batch';
  first: number;
  count: number;
  prev: string;
  head: string;
  mac: string;
}

export function chainHash(recordWithoutHash: object): string {
  return crypto.createHash('sha256').update(JSON.stringify(recordWithoutHash)).digest('hex');
}

/**
 * Record `seq` of a chain, after the record whose hash is `prev`: the fields in the order hashed,
 * then `hash`. The files and the PostgreSQL trail chain the same records.
 */
export function requestRecord(seq: number, f: RequestFields, prev: string): Extract<AuditRecord, { type: 'request' }> {
  const record = {
    seq, type: 'request' as const, time: f.time, requestId: f.requestId, operation: f.operation, principal: f.principal,
    accessKeyId: f.accessKeyId, sourceIp: f.sourceIp, keyArn: f.keyArn, status: f.status, errorCode: f.errorCode, prev,
  };
  return { ...record, hash: chainHash(record) };
}

/** The bytes a batch header's HSM HMAC covers. */
export function batchMessage(h: Pick<BatchHeader, 'first' | 'count' | 'prev' | 'head'>): Buffer {
  return Buffer.from(`qkms-audit-batch-v1\n${h.first}\n${h.count}\n${h.prev}\n${h.head}`);
}

/** The bytes the store's anchor's HSM HMAC covers; another domain, so a batch header is never an anchor. */
export function anchorMessage(a: { segment: number; endOffset: number; seq: number; head: string }): Buffer {
  return Buffer.from(`qkms-audit-anchor-v1\n${a.segment}\n${a.endOffset}\n${a.seq}\n${a.head}`);
}

/** The bytes a legacy checkpoint record's HSM HMAC covers. */
export function checkpointMessage(coversSeq: number, coversHash: string): Buffer {
  return Buffer.from(`qkms-audit-checkpoint-v1\n${coversSeq}\n${coversHash}`);
}

/** The HSM key that signs batch headers, anchors and (in older trails) checkpoints (label qkms-internal/audit-mac). */
export const AUDIT_MAC_KEY = internalKeyRef('audit-mac');

/** HMAC-SHA-256: 32 bytes, so a header's length is known before the HSM signs it. */
export const MAC_HEX_LENGTH = 64;

const SEGMENT = /^audit-(\d{8})\.jsonl$/;

export function segmentName(n: number): string {
  return `audit-${String(n).padStart(8, '0')}.jsonl`;
}

export function listSegments(dir: string): Array<{ n: number; file: string }> {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .map((name) => ({ m: SEGMENT.exec(name), name }))
    .filter((x) => x.m)
    .map((x) => ({ n: Number(x.m![1]), file: path.join(dir, x.name) }))
    .sort((a, b) => a.n - b.n);
}
