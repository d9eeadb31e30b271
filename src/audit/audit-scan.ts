import fs from 'node:fs';
import type { AuditAnchor } from '../domain/key-repository';
import type { AuditMac } from './audit-mac';
import { anchorMessage, batchMessage, chainHash, checkpointMessage, GENESIS, listSegments, segmentName, type AuditRecord, type BatchHeader } from './audit-record';

/** After record `seq` (hash `head`), at byte `offset` of segment `segment`. */
export interface TrailPoint {
  segment: number;
  offset: number;
  seq: number;
  head: string;
}

export interface TrailProblem {
  file: string;
  /** 1-based; 0 when the problem is not one line (a missing file, the anchor). */
  line: number;
  seq?: number;
  reason: string;
}

/** The store's anchor as getAuditAnchor returns it. */
export type AnchorState = AuditAnchor | 'adopt' | undefined;

export interface TrailScan {
  /** Request records checked, in complete batches and before batches existed. */
  records: number;
  batches: number;
  /** Legacy checkpoint records whose HSM HMAC verified. */
  checkpoints: number;
  hasBatches: boolean;
  /** The record the anchor names, once the walk reached it and it matched. */
  anchoredSeq?: number;
  /** Complete, signed batches after the anchor: written, not anchored yet (or being anchored). */
  unanchored: { batches: number; records: number };
  /** After the last complete batch (or legacy record): where the trail continues. */
  end: TrailPoint;
  /** The highest segment number; 0 when there is no segment. */
  lastSegment: number;
  /** A batch cut short, or a partial line, at the very end: never acknowledged. */
  unfinished?: { segment: number; offset: number; bytes: number; records: number };
  problem?: TrailProblem;
}

interface OpenBatch {
  header: BatchHeader;
  left: number;
  offset: number;
  line: number;
}

class Stop extends Error {}

/**
 * Walks the trail and checks it against the store's anchor. `isFromAnchor` (start-up): segments
 * before the anchored one are only checked to exist and hold something, the record at the anchor
 * must be the one it names, and only what follows it is read — the anchor's head commits to the
 * whole chain before it, which `qkms audit verify` (the full walk) checks record by record.
 * Batch-header HMACs are checked after the anchor, where they are what authenticates the records;
 * before it the anchor does.
 */
export async function scanTrail(dir: string, mac: AuditMac, anchor: AnchorState, { isFromAnchor }: { isFromAnchor: boolean }): Promise<TrailScan> {
  const walk = new Walk(mac, anchor);
  try {
    await walk.run(dir, isFromAnchor);
  } catch (err) {
    if (!(err instanceof Stop)) throw err;
  }
  return walk.result;
}

class Walk {
  readonly result: TrailScan = { records: 0, batches: 0, checkpoints: 0, hasBatches: false, unanchored: { batches: 0, records: 0 }, end: { segment: 1, offset: 0, seq: 0, head: GENESIS }, lastSegment: 0 };
  private seq = 0;
  private head = GENESIS;
  private batch?: OpenBatch;
  private isPastAnchor = false;
  /** Legacy checkpoints name an earlier record by seq. */
  private readonly legacyHashes = new Map<number, string>();
  private file = '';
  private line = 0;

  constructor(
    private readonly mac: AuditMac,
    private readonly anchor: AnchorState,
  ) {}

  async run(dir: string, isFromAnchor: boolean): Promise<void> {
    const segments = listSegments(dir);
    const anchor = this.anchor;
    this.result.lastSegment = segments.at(-1)?.n ?? 0;
    this.result.end.segment = segments[0]?.n ?? 1;
    for (const [i, s] of segments.entries()) {
      if (s.n !== i + 1) this.fail('the segment is missing (removed or renamed)', segmentName(i + 1));
    }
    if (anchor === undefined) this.fail('the key store holds no audit anchor (its row was deleted)', 'qkms.db');
    if (typeof anchor === 'object') {
      if (!(await this.mac.verify(anchorMessage(anchor), Buffer.from(anchor.mac, 'hex')))) this.fail('the audit anchor in the key store is not signed by the HSM (forged or altered)', 'qkms.db');
      if (segments.length === 0) this.fail(`no audit trail: the directory holds no segment file, but the store's anchor says the trail reaches seq ${anchor.seq} in ${segmentName(anchor.segment)}`, segmentName(anchor.segment));
      if (anchor.segment > this.result.lastSegment) this.fail(`the anchored segment is missing (removed or renamed); the store's anchor says the trail reaches seq ${anchor.seq} in it`, segmentName(anchor.segment));
    }
    for (const s of segments) {
      this.file = segmentName(s.n);
      this.line = 0;
      const isBeforeAnchor = typeof anchor === 'object' && s.n < anchor.segment;
      if (isFromAnchor && isBeforeAnchor) {
        if (fs.statSync(s.file).size === 0) this.fail('the segment is empty (emptied); every segment before the anchored one holds records');
        continue;
      }
      const bytes = fs.readFileSync(s.file);
      const start = isFromAnchor && typeof anchor === 'object' && s.n === anchor.segment ? this.resumeAt(anchor, bytes, s.n) : 0;
      await this.segment(bytes, s.n, start, s.n === this.result.lastSegment);
    }
  }

  /** Start-up: the record that ends at the anchored offset must be the one the anchor names. */
  private resumeAt(anchor: AuditAnchor, bytes: Buffer, segment: number): number {
    const { endOffset } = anchor;
    if (bytes.length < endOffset) this.fail(`the segment has ${bytes.length} bytes, but the store's anchor says it reaches byte ${endOffset} (seq ${anchor.seq}): the trail was truncated or emptied`);
    for (let i = bytes.indexOf(0x0a); i >= 0 && i < endOffset; i = bytes.indexOf(0x0a, i + 1)) this.line++;
    if (endOffset === 0) {
      if (anchor.seq !== 0 || anchor.head !== GENESIS || segment !== 1) this.fail('the anchor names the start of a segment other than the first');
    } else {
      if (bytes[endOffset - 1] !== 0x0a) this.fail(`byte ${endOffset}, where the store's anchor says seq ${anchor.seq} ends, is not the end of a record: the trail was rewritten`);
      const record = this.parse(bytes.subarray(bytes.lastIndexOf(0x0a, endOffset - 2) + 1, endOffset - 1)) as AuditRecord;
      const { hash, ...rest } = record;
      const isIntact = (record.type === 'request' || record.type === 'checkpoint') && chainHash(rest) === hash;
      if (!isIntact || record.seq !== anchor.seq || hash !== anchor.head) this.fail(`the record that ends where the store's anchor points is not seq ${anchor.seq} with the anchored hash: the trail was rewritten`, undefined, record.seq);
    }
    this.seq = anchor.seq;
    this.head = anchor.head;
    this.reachAnchor({ segment, offset: endOffset, seq: anchor.seq, head: anchor.head });
    return endOffset;
  }

  private async segment(bytes: Buffer, segment: number, start: number, isLast: boolean): Promise<void> {
    const anchor = typeof this.anchor === 'object' && this.anchor.segment === segment && !this.isPastAnchor ? this.anchor : undefined;
    if (anchor?.endOffset === 0) this.checkAnchor(anchor, segment);
    let pos = start;
    for (let nl = bytes.indexOf(0x0a, pos); nl >= 0; nl = bytes.indexOf(0x0a, pos)) {
      const lineStart = pos;
      pos = nl + 1;
      this.line++;
      if (anchor && !this.isPastAnchor && lineStart < anchor.endOffset && pos > anchor.endOffset) this.fail(`the store's anchor points inside this line (byte ${anchor.endOffset}): the trail was rewritten`);
      await this.entry(this.parse(bytes.subarray(lineStart, nl)), { segment, offset: lineStart, end: pos });
      if (anchor && !this.isPastAnchor && pos === anchor.endOffset) this.checkAnchor(anchor, segment);
    }
    if (anchor && !this.isPastAnchor) {
      this.fail(`the segment ends at byte ${pos}, but the store's anchor says it reaches byte ${anchor.endOffset} (seq ${anchor.seq}): the trail was truncated or emptied`);
    }
    const cut = this.batch ? this.batch.offset : pos;
    if (cut === bytes.length) return;
    if (!isLast) this.fail(this.batch ? `the segment ends inside the batch announced at line ${this.batch.line}: records were removed from its end` : 'the segment ends with a partial line: records were removed or cut');
    const records = this.batch ? this.batch.header.count - this.batch.left : 0;
    this.result.unfinished = { segment, offset: cut, bytes: bytes.length - cut, records };
  }

  private checkAnchor(anchor: AuditAnchor, segment: number): void {
    if (this.batch) this.fail(`the store's anchor points inside the batch announced at line ${this.batch.line}: the trail was rewritten`);
    if (this.seq !== anchor.seq || this.head !== anchor.head) {
      this.fail(`the record where the store's anchor points is seq ${this.seq}, the anchor says seq ${anchor.seq} with another hash: the trail was rewritten or truncated`, undefined, this.seq);
    }
    this.reachAnchor({ segment, offset: anchor.endOffset, seq: anchor.seq, head: anchor.head });
  }

  private reachAnchor(point: TrailPoint): void {
    this.isPastAnchor = true;
    this.result.anchoredSeq = point.seq;
    this.result.end = point;
    this.legacyHashes.clear();
  }

  private parse(line: Buffer): unknown {
    try {
      const value = JSON.parse(line.toString('utf8')) as unknown;
      if (value && typeof value === 'object') return value;
    } catch {
      // reported below
    }
    return this.fail('not a JSON record');
  }

  private async entry(value: unknown, at: { segment: number; offset: number; end: number }): Promise<void> {
    const entry = value as { type?: unknown };
    if (entry.type === 'batch') return this.header(value as BatchHeader, at.offset);
    if (entry.type !== 'request' && entry.type !== 'checkpoint') this.fail('not an audit record');
    const record = value as AuditRecord;
    this.link(record);
    if (this.batch) {
      if (record.type !== 'request') this.fail('a checkpoint record inside a batch', undefined, record.seq);
      if (--this.batch.left === 0) this.closeBatch(this.batch.header, at);
      return;
    }
    if (this.result.hasBatches || this.isPastAnchor) this.fail('a record that no HSM-signed batch header covers (added, or its header removed)', undefined, record.seq);
    if (record.type === 'checkpoint') await this.legacyCheckpoint(record);
    else this.result.records++;
    this.legacyHashes.set(record.seq, record.hash);
    this.result.end = { segment: at.segment, offset: at.end, seq: this.seq, head: this.head };
  }

  /** seq, prev and hash: the chain. */
  private link(record: AuditRecord): void {
    if (record.seq !== this.seq + 1) this.fail(`sequence number ${record.seq} where ${this.seq + 1} was expected (a record was deleted, inserted or moved)`, undefined, record.seq);
    if (record.prev !== this.head) this.fail('prev does not match the previous record (a record was deleted, inserted or moved)', undefined, record.seq);
    const { hash, ...rest } = record;
    if (chainHash(rest) !== hash) this.fail('hash does not match the record (the record was edited)', undefined, record.seq);
    this.seq = record.seq;
    this.head = hash;
  }

  private async header(h: BatchHeader, offset: number): Promise<void> {
    if (this.batch) this.fail(`a batch header where record ${this.seq + 1} of the batch announced at line ${this.batch.line} was expected`);
    if (this.anchor === 'adopt') this.fail('an HSM-signed batch, but the key store has no anchor yet: the store was replaced or its anchor reset');
    const isWellFormed = Number.isSafeInteger(h.first) && Number.isSafeInteger(h.count) && h.count >= 1 && [h.prev, h.head, h.mac].every((x) => typeof x === 'string');
    if (!isWellFormed) this.fail('a malformed batch header');
    if (h.first !== this.seq + 1) this.fail(`a batch starting at seq ${h.first} where ${this.seq + 1} was expected (records were deleted, inserted or moved)`, undefined, h.first);
    if (h.prev !== this.head) this.fail('the batch\'s prev does not match the previous record (records were deleted, inserted or moved)', undefined, h.first);
    if (this.isPastAnchor && !(await this.mac.verify(batchMessage(h), Buffer.from(h.mac, 'hex')))) {
      this.fail('the batch header\'s signature does not verify in the HSM (forged or altered)', undefined, h.first);
    }
    this.result.hasBatches = true;
    this.batch = { header: h, left: h.count, offset, line: this.line };
  }

  private closeBatch(h: BatchHeader, at: { segment: number; end: number }): void {
    if (this.head !== h.head) this.fail('the batch\'s last record is not the head its signed header names (the batch was altered)', undefined, this.seq);
    this.batch = undefined;
    this.result.batches++;
    this.result.records += h.count;
    if (this.isPastAnchor) {
      this.result.unanchored.batches++;
      this.result.unanchored.records += h.count;
    }
    this.result.end = { segment: at.segment, offset: at.end, seq: this.seq, head: this.head };
  }

  private async legacyCheckpoint(c: Extract<AuditRecord, { type: 'checkpoint' }>): Promise<void> {
    const isCovered = this.legacyHashes.get(c.coversSeq) === c.coversHash;
    if (!isCovered || !(await this.mac.verify(checkpointMessage(c.coversSeq, c.coversHash), Buffer.from(String(c.mac), 'hex')))) {
      this.fail('checkpoint signature does not verify in the HSM (records before it were rewritten)', undefined, c.seq);
    }
    this.result.checkpoints++;
  }

  private fail(reason: string, file = this.file, seq?: number): never {
    this.result.problem = { file, line: file === this.file ? this.line : 0, ...(seq !== undefined && { seq }), reason };
    throw new Stop();
  }
}
