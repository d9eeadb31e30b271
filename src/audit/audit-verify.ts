import type { Hsm } from '../hsm/hsm';
import { auditMac } from './audit-mac';
import { scanTrail, type AnchorState, type TrailProblem } from './audit-scan';

export interface AuditVerification {
  isIntact: boolean;
  /** Request records checked. */
  records: number;
  batches: number;
  /** Signed checkpoint records of a trail written before batches existed. */
  checkpoints: number;
  /** The last record the store's HSM-signed anchor covers; null until a gateway first anchored the trail. */
  anchoredSeq: number | null;
  /**
   * Records in complete, signed batches after the anchor: being committed beside a running
   * gateway, or written just before a crash (the next start anchors them).
   */
  unanchoredRecords: number;
  /**
   * Bytes at the end that are not a complete batch: a batch being written beside a running
   * gateway, or cut short by a crash — never acknowledged; the next start sets them aside.
   */
  unfinishedBytes: number;
  firstBad?: TrailProblem;
}

/**
 * The whole trail, record by record: every segment from the first, the hash chain, the legacy
 * checkpoints' and the batch headers' HSM HMACs, and the store's anchor (read it before the files:
 * a gateway beside us only ever moves it forward).
 */
export async function verifyAuditTrail(dir: string, hsm: Hsm, anchor: AnchorState): Promise<AuditVerification> {
  const scan = await scanTrail(dir, auditMac(hsm), anchor, { isFromAnchor: false });
  return {
    isIntact: !scan.problem,
    records: scan.records,
    batches: scan.batches,
    checkpoints: scan.checkpoints,
    anchoredSeq: scan.anchoredSeq ?? null,
    unanchoredRecords: scan.unanchored.records,
    unfinishedBytes: scan.unfinished?.bytes ?? 0,
    ...(scan.problem && { firstBad: scan.problem }),
  };
}

/** One line for people: `qkms audit verify` prints it, the compliance report shows it. */
export function describeVerification(r: AuditVerification): string {
  if (!r.isIntact) {
    const b = r.firstBad!;
    return `AUDIT TRAIL TAMPERED: ${b.line ? `first bad record at ${b.file} line ${b.line}` : b.file}${b.seq !== undefined ? ` (seq ${b.seq})` : ''}: ${b.reason}`;
  }
  const parts = [
    `audit trail intact: ${r.records} records in ${r.batches} signed batches${r.checkpoints ? ` (and ${r.checkpoints} checkpoints of the trail before batches)` : ''}`,
    r.anchoredSeq === null ? 'not anchored yet (the next gateway start adopts it)' : `anchored up to seq ${r.anchoredSeq}`,
  ];
  if (r.unanchoredRecords) parts.push(`${r.unanchoredRecords} newer records in signed batches being anchored (or written before a crash; the next start anchors them)`);
  if (r.unfinishedBytes) parts.push(`${r.unfinishedBytes} bytes of a batch being written (or cut short by a crash; the next start sets them aside), not checked`);
  return parts.join('; ');
}
