import fs from 'node:fs';
import path from 'node:path';
import type { AuditAnchor, KeyRepository } from '../domain/key-repository';
import type { Logger } from '../logging/logger';
import type { AuditMac } from './audit-mac';
import { anchorMessage, segmentName } from './audit-record';
import { scanTrail, type TrailPoint, type TrailProblem } from './audit-scan';

export type AnchorStore = Pick<KeyRepository, 'getAuditAnchor' | 'setAuditAnchor'>;

/** The trail does not verify against its anchor: the gateway must not extend it. */
export class AuditTrailRefused extends Error {
  constructor(readonly problem: TrailProblem) {
    super(`the audit trail does not verify: ${problem.file}${problem.line ? ` line ${problem.line}` : ''}${problem.seq !== undefined ? ` (seq ${problem.seq})` : ''}: ${problem.reason}`);
  }
}

/** Where the next batch goes: the last segment, its size, and the chain's head. */
export interface ResumePoint {
  segment: number;
  segmentBytes: number;
  seq: number;
  head: string;
}

/**
 * Checks the trail from the store's anchor before the gateway writes to it, and refuses anything
 * but what a crash or a stop leaves: after the anchor, complete signed batches (written, not yet
 * anchored: anchored now) and at the very end one batch cut short (never acknowledged: moved to a
 * side file). A store whose anchor was never set adopts the trail once, as the full walk finds it:
 * a trail from before anchors (chained records and signed checkpoints) or none — unless the store
 * was created by this very start, next to a trail that cannot be its own.
 */
export async function resumeTrail(
  dir: string,
  parts: { mac: AuditMac; anchors: AnchorStore; logger: Logger },
  { isNewStore }: { isNewStore: boolean },
): Promise<ResumePoint> {
  const { mac, anchors, logger } = parts;
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const anchor = await anchors.getAuditAnchor();
  const scan = await scanTrail(dir, mac, anchor, { isFromAnchor: true });
  if (scan.problem) throw new AuditTrailRefused(scan.problem);
  if (anchor === 'adopt' && isNewStore && (scan.records > 0 || scan.checkpoints > 0 || scan.unfinished)) {
    throw new AuditTrailRefused({ file: path.basename(dir), line: 0, reason: `the key store was created by this start, but the directory holds a trail (${scan.records} records): it belongs to another store; restore that store, or move the trail away` });
  }
  if (scan.unfinished) await setAside(dir, scan.unfinished, logger);
  const segment = Math.max(scan.lastSegment, 1);
  const file = path.join(dir, segmentName(segment));
  if (scan.lastSegment === 0) {
    fs.closeSync(fs.openSync(file, 'a', 0o600));
    await syncDirectory(dir);
  }
  if (anchor === 'adopt' || scan.unanchored.batches > 0) {
    await anchors.setAuditAnchor(await signAnchor(mac, scan.end));
    if (anchor === 'adopt' && scan.end.seq === 0) {
      logger.info('audit trail: a new trail, anchored in the key store');
    } else if (anchor === 'adopt') {
      logger.warn('audit trail adopted and anchored in the key store (first start with anchors); from now on it must verify against the anchor', { records: scan.records, checkpoints: scan.checkpoints, anchoredSeq: scan.end.seq });
    } else {
      logger.warn('audit trail: complete signed batches written before a stop or crash, but not anchored, are anchored now', { batches: scan.unanchored.batches, records: scan.unanchored.records, anchoredSeq: scan.end.seq });
    }
  }
  logger.info('audit trail verified from its anchor', { seq: scan.end.seq, segment: segmentName(segment) });
  return { segment, segmentBytes: fs.statSync(file).size, seq: scan.end.seq, head: scan.end.head };
}

async function signAnchor(mac: AuditMac, point: TrailPoint): Promise<AuditAnchor> {
  const { segment, offset: endOffset, seq, head } = point;
  return { segment, endOffset, seq, head, mac: (await mac.sign(anchorMessage({ segment, endOffset, seq, head }))).toString('hex') };
}

/**
 * A batch cut short by a crash (or a partial line) was never acknowledged: its bytes go to a side
 * file, kept for inspection, and the segment ends at the last complete batch again.
 */
async function setAside(dir: string, cut: { segment: number; offset: number; bytes: number; records: number }, logger: Logger): Promise<void> {
  const file = path.join(dir, segmentName(cut.segment));
  const aside = `${file}.unfinished-${Date.now()}`;
  const fd = fs.openSync(file, 'r+');
  try {
    const bytes = Buffer.alloc(cut.bytes);
    fs.readSync(fd, bytes, 0, cut.bytes, cut.offset);
    const asideFd = fs.openSync(aside, 'wx', 0o600);
    try {
      fs.writeSync(asideFd, bytes);
      fs.fsyncSync(asideFd);
    } finally {
      fs.closeSync(asideFd);
    }
    fs.ftruncateSync(fd, cut.offset);
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  await syncDirectory(dir);
  logger.warn('audit trail: a batch cut short at the end (a crash during its write; its requests were never answered) was moved aside', {
    file: path.basename(file),
    movedTo: path.basename(aside),
    bytes: cut.bytes,
    completeRecords: cut.records,
  });
}

/** A new or renamed file survives a power cut only once its directory entry is on disk. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await fs.promises.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
