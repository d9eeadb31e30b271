import fs from 'node:fs';
import path from 'node:path';
import type { Hsm } from '../hsm/hsm';
import type { Logger } from '../logging/logger';
import { AUDIT_MAC_LABEL, chainHash, checkpointMessage, GENESIS, type AuditRecord, type RequestFields } from './audit-record';

export interface AuditOptions {
  checkpointEveryMs: number;
  checkpointEveryRecords: number;
  maxSegmentBytes: number;
  /** Told of every record: written, or lost (the metrics count both). */
  onRecord?: (type: 'request' | 'checkpoint', isWritten: boolean) => void;
}

const SEGMENT = /^audit-(\d{8})\.jsonl$/;

/**
 * The append-only audit trail in `<dir>/audit-NNNNNNNN.jsonl`. Records are appended with one
 * write each to a file opened for appending; a segment past `maxSegmentBytes` is closed after a
 * checkpoint and the chain continues in the next one. On open, the chain resumes from the last
 * record on disk, so restarts do not break it.
 */
export class AuditLog {
  private fd = -1;
  private segment = 0;
  private segmentBytes = 0;
  private seq = 0;
  private head = GENESIS;
  private uncheckpointed = 0;
  private timer?: NodeJS.Timeout;
  private checkpointing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly dir: string,
    private readonly hsm: Hsm,
    private readonly logger: Logger,
    private readonly options: AuditOptions,
  ) {}

  static open(dir: string, hsm: Hsm, logger: Logger, options: AuditOptions): AuditLog {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const log = new AuditLog(dir, hsm, logger, options);
    log.resume();
    log.timer = setInterval(() => void log.checkpoint(), options.checkpointEveryMs);
    log.timer.unref();
    return log;
  }

  /** One request, allowed or denied. Never throws: a failing audit write is logged loudly. */
  append(fields: RequestFields): void {
    this.write({ seq: this.seq + 1, type: 'request', ...fields });
    if (++this.uncheckpointed >= this.options.checkpointEveryRecords) void this.checkpoint();
  }

  /** Signs the current head in the HSM and appends the checkpoint; no-op if nothing is new. */
  checkpoint(): Promise<void> {
    this.checkpointing = this.checkpointing.then(async () => {
      if (this.uncheckpointed === 0) return;
      const coversSeq = this.seq;
      const coversHash = this.head;
      this.uncheckpointed = 0;
      try {
        const mac = (await this.hsm.hmacSign(AUDIT_MAC_LABEL, checkpointMessage(coversSeq, coversHash))).toString('hex');
        this.write({ seq: this.seq + 1, type: 'checkpoint', time: new Date().toISOString(), coversSeq, coversHash, mac });
        if (this.segmentBytes >= this.options.maxSegmentBytes) this.rotate();
      } catch (err) {
        this.uncheckpointed += 1;
        this.logger.error('audit checkpoint failed; retried at the next interval', { cause: err instanceof Error ? err.message : String(err) });
      }
    });
    return this.checkpointing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.checkpoint();
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  private write(record: { seq: number; type: 'request' | 'checkpoint' } & Record<string, unknown>): void {
    const withPrev = { ...record, prev: this.head };
    const full = { ...withPrev, hash: chainHash(withPrev) };
    const line = `${JSON.stringify(full)}\n`;
    try {
      fs.writeSync(this.fd, line);
      this.seq = full.seq;
      this.head = full.hash;
      this.segmentBytes += Buffer.byteLength(line);
      this.options.onRecord?.(record.type, true);
    } catch (err) {
      this.logger.error('AUDIT WRITE FAILED', { seq: full.seq, cause: err instanceof Error ? err.message : String(err) });
      this.options.onRecord?.(record.type, false);
    }
  }

  private rotate(): void {
    fs.closeSync(this.fd);
    this.openSegment(this.segment + 1);
  }

  private openSegment(n: number): void {
    this.segment = n;
    const file = path.join(this.dir, `audit-${String(n).padStart(8, '0')}.jsonl`);
    this.fd = fs.openSync(file, 'a', 0o600);
    this.segmentBytes = fs.fstatSync(this.fd).size;
  }

  private resume(): void {
    const segments = listSegments(this.dir);
    const last = segments[segments.length - 1];
    if (last) this.setAsideTornTail(last.file);
    this.openSegment(last ? last.n : 1);
    for (const s of [...segments].reverse()) {
      const lines = fs.readFileSync(s.file, 'utf8').split('\n').filter(Boolean);
      if (lines.length === 0) continue;
      const tail = JSON.parse(lines[lines.length - 1]) as Pick<AuditRecord, 'seq' | 'hash'>;
      this.seq = tail.seq;
      this.head = tail.hash;
      break;
    }
  }

  /**
   * A crash in the middle of a write can leave a partial last line (every record ends with a
   * newline). It is moved to a side file, kept for inspection, and the chain continues from the
   * last whole record, so the trail still verifies and start-up does not stop on it.
   */
  private setAsideTornTail(file: string): void {
    const bytes = fs.readFileSync(file);
    const end = bytes.lastIndexOf(0x0a) + 1;
    if (end === bytes.length) return;
    const aside = `${file}.torn-${Date.now()}`;
    fs.writeFileSync(aside, bytes.subarray(end), { mode: 0o600 });
    fs.truncateSync(file, end);
    this.logger.error('audit trail: a partial last record, torn by a crash, was moved aside; the chain continues from the last whole record', {
      file: path.basename(file),
      movedTo: path.basename(aside),
      bytes: bytes.length - end,
    });
  }
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
