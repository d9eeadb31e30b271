import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../logging/logger';
import type { AuditMac } from './audit-mac';
import { anchorMessage, batchMessage, MAC_HEX_LENGTH, requestRecord, segmentName, type RequestFields } from './audit-record';
import { resumeTrail, syncDirectory, type AnchorStore, type ResumePoint } from './audit-startup';
import type { AuditTrail } from './audit-trail';
import { GroupCommit } from './group-commit';

export interface AuditOptions {
  maxSegmentBytes: number;
  /** QKMS_AUDIT_FAIL_OPEN: answer the requests of a batch that could not be written (logged loudly). */
  isFailOpen: boolean;
  /** The key store was created by this start (see resumeTrail). */
  isNewStore: boolean;
  /** Told of every batch, written or failed (the metrics). */
  onBatch?: (batch: { records: number; seconds: number; isWritten: boolean }) => void;
}

interface Parts {
  mac: AuditMac;
  anchors: AnchorStore;
  logger: Logger;
}

/**
 * The append-only audit trail in files (format: audit-record.ts), written by group commit
 * (group-commit.ts). A batch is the HSM's two HMACs, one write (its signed header, then its
 * records) that returns once it is on disk (O_DSYNC), then the anchor in the key store; only then
 * do its callers' promises resolve, so a response is released only once its record is durable.
 * When any step fails the batch is cut off the file again and its promises reject with
 * KMSInternalException (or, fail-open, resolve after a loud log line).
 */
export class AuditLog implements AuditTrail {
  private readonly commits: GroupCommit;
  /** The size to cut the segment back to, when cutting a failed batch off failed: retried first. */
  private cutPending?: number;

  private constructor(
    private readonly dir: string,
    private readonly parts: Parts,
    private readonly options: AuditOptions,
    private at: ResumePoint,
  ) {
    this.commits = new GroupCommit((batch) => this.write(batch), { ...options, logger: parts.logger });
  }

  /** The segment being written, opened at the first batch. */
  private file?: fs.promises.FileHandle;

  /** Verifies the trail from its anchor first, and refuses (AuditTrailRefused) one that does not verify. */
  static async open(dir: string, parts: Parts, options: AuditOptions): Promise<AuditLog> {
    const at = await resumeTrail(dir, parts, { isNewStore: options.isNewStore });
    if (options.isFailOpen) {
      parts.logger.error('QKMS_AUDIT_FAIL_OPEN is on: requests are answered even when their audit record cannot be written, and the trail then misses them');
    }
    return new AuditLog(dir, parts, options, at);
  }

  /** Resolves once the record is durable and anchored; rejects with KMSInternalException when it cannot be. */
  record(fields: RequestFields): Promise<void> {
    return this.commits.record(fields);
  }

  /** Commits what is queued, then closes the segment; later records are refused. */
  async close(): Promise<void> {
    await this.commits.close();
    await this.file?.close();
    this.file = undefined;
  }

  private async write(fields: RequestFields[]): Promise<void> {
    await this.retryCut();
    if (this.at.segmentBytes >= this.options.maxSegmentBytes) await this.rotate();
    const { segment, segmentBytes: start } = this.at;
    const file = (this.file ??= await openSegment(path.join(this.dir, segmentName(segment))));
    const { header, body, last } = chain(this.at, fields);
    const headerBytes = Buffer.byteLength(`${JSON.stringify({ ...header, mac: '0'.repeat(MAC_HEX_LENGTH) })}\n`);
    const anchor = { segment, endOffset: start + headerBytes + Buffer.byteLength(body), seq: last.seq, head: last.head };
    const [batchMac, anchorMac] = await Promise.all([this.parts.mac.sign(batchMessage(header)), this.parts.mac.sign(anchorMessage(anchor))]);
    const bytes = Buffer.from(`${JSON.stringify({ ...header, mac: batchMac.toString('hex') })}\n${body}`);
    if (start + bytes.length !== anchor.endOffset) throw new Error(`the HSM's HMAC is ${batchMac.length} bytes, not ${MAC_HEX_LENGTH / 2}`);
    let isWritten = false;
    try {
      for (let written = 0; written < bytes.length; ) {
        const { bytesWritten } = await file.write(bytes, written, bytes.length - written, start + written);
        if (bytesWritten <= 0) throw new Error('the file system wrote nothing');
        written += bytesWritten;
      }
      isWritten = true;
      await this.parts.anchors.setAuditAnchor({ ...anchor, mac: anchorMac.toString('hex') });
    } catch (err) {
      // Should the store have committed after all, the next start finds the anchor past the end
      // of the segment: this line tells that from tampering.
      if (isWritten) this.parts.logger.error('audit trail: the anchor could not be committed; the batch is cut off again', { attempted: anchor });
      await this.cutBack(file, start, anchor);
      throw err;
    }
    this.at = { segment, segmentBytes: anchor.endOffset, seq: last.seq, head: last.head };
  }

  /**
   * No partial or unanchored batch may stay behind a failed one. If even the truncation fails, the
   * next batch retries it before it writes anything.
   */
  private async cutBack(file: fs.promises.FileHandle, size: number, attempted: { segment: number; endOffset: number; seq: number }): Promise<void> {
    try {
      await file.truncate(size);
    } catch (err) {
      this.cutPending = size;
      this.parts.logger.error('audit trail: a failed batch could not be cut off its segment; retried before the next batch', {
        segment: segmentName(attempted.segment), size, attempted, cause: err instanceof Error ? err.message : String(err),
      });
    }
  }

  private async retryCut(): Promise<void> {
    if (this.cutPending === undefined || !this.file) return;
    await this.file.truncate(this.cutPending);
    this.cutPending = undefined;
  }

  /** Between batches only: a batch never spans two segments. */
  private async rotate(): Promise<void> {
    const segment = this.at.segment + 1;
    const file = await openSegment(path.join(this.dir, segmentName(segment)));
    try {
      await syncDirectory(this.dir);
      const { size } = await file.stat();
      await this.file?.close().catch(() => undefined);
      this.file = file;
      this.at = { ...this.at, segment, segmentBytes: size };
    } catch (err) {
      await file.close();
      throw err;
    }
  }
}

/**
 * O_DSYNC: a write returns once its bytes (and the file size) are on disk, so a batch costs one
 * trip to the thread pool, not two (write, then fdatasync): under load each trip waits for a turn
 * of the busy event loop.
 */
function openSegment(file: string): Promise<fs.promises.FileHandle> {
  return fs.promises.open(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_DSYNC, 0o600);
}

/** The batch's records chained after `from`, as JSON lines, and its header (unsigned). */
function chain(from: { seq: number; head: string }, fields: RequestFields[]) {
  let prev = from.head;
  const lines = fields.map((f, i) => {
    const record = requestRecord(from.seq + 1 + i, f, prev);
    prev = record.hash;
    return `${JSON.stringify(record)}\n`;
  });
  const last = { seq: from.seq + fields.length, head: prev };
  return { header: { type: 'batch' as const, first: from.seq + 1, count: fields.length, prev: from.head, head: prev }, body: lines.join(''), last };
}
