import fs from 'node:fs';
import path from 'node:path';
import type { Hsm } from '../hsm/hsm';
import { listSegments } from './audit-log';
import { AUDIT_MAC_LABEL, chainHash, checkpointMessage, GENESIS, type AuditRecord } from './audit-record';

export interface AuditVerification {
  isIntact: boolean;
  records: number;
  checkpoints: number;
  /** The last record a valid checkpoint covers; records after it are chained but not yet signed. */
  lastCheckpointedSeq: number;
  unsignedTail: number;
  /**
   * Bytes after the last newline of the last segment: a record being written while we read (a
   * gateway runs beside the verifier) or torn by a crash (the gateway moves it aside on start).
   * Not a record yet, so not checked.
   */
  partialTailBytes: number;
  firstBad?: { file: string; line: number; seq?: number; reason: string };
}

/**
 * Walks every segment in order and checks each record's sequence number, `prev` link and hash,
 * and each checkpoint's HSM HMAC over the head it claims to cover. Stops at the first bad record.
 */
export async function verifyAuditTrail(dir: string, hsm: Hsm): Promise<AuditVerification> {
  const result: AuditVerification = { isIntact: true, records: 0, checkpoints: 0, lastCheckpointedSeq: 0, unsignedTail: 0, partialTailBytes: 0 };
  const segments = listSegments(dir);
  // A gateway opens its first segment on start, so a data dir without one lost its trail.
  if (segments.length === 0) return { ...result, isIntact: false, firstBad: { file: path.basename(dir), line: 0, reason: 'no audit trail: the directory holds no segment file (deleted, or the wrong data dir)' } };
  let head = GENESIS;
  let seq = 0;
  let lastCheckpointRecord = 0;
  const hashes = new Map<number, string>();
  for (const { file } of segments) {
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    // Every record ends with a newline: what follows the last one is not a record (yet).
    const partial = lines.pop()!;
    if (file === segments[segments.length - 1].file) result.partialTailBytes = Buffer.byteLength(partial);
    else if (partial !== '') lines.push(partial);
    for (let i = 0; i < lines.length; i++) {
      const bad = (reason: string, at?: number) => {
        result.isIntact = false;
        result.firstBad = { file: path.basename(file), line: i + 1, seq: at, reason };
        return result;
      };
      let record: AuditRecord;
      try {
        record = JSON.parse(lines[i]) as AuditRecord;
      } catch {
        return bad('not a JSON record');
      }
      if (record.seq !== seq + 1) return bad(`sequence number ${record.seq} where ${seq + 1} was expected (a record was deleted, inserted or moved)`, record.seq);
      if (record.prev !== head) return bad('prev does not match the previous record (a record was deleted, inserted or moved)', record.seq);
      const { hash, ...rest } = record;
      if (chainHash(rest) !== hash) return bad('hash does not match the record (the record was edited)', record.seq);
      if (record.type === 'checkpoint') {
        const isCovered = hashes.get(record.coversSeq) === record.coversHash;
        const isSigned = isCovered && (await hsm.hmacVerify(AUDIT_MAC_LABEL, checkpointMessage(record.coversSeq, record.coversHash), Buffer.from(record.mac, 'hex')));
        if (!isSigned) return bad('checkpoint signature does not verify in the HSM (records before it were rewritten)', record.seq);
        result.checkpoints++;
        result.lastCheckpointedSeq = record.coversSeq;
        lastCheckpointRecord = record.seq;
      } else {
        result.records++;
      }
      hashes.set(record.seq, record.hash);
      head = record.hash;
      seq = record.seq;
    }
  }
  result.unsignedTail = seq - lastCheckpointRecord;
  return result;
}
