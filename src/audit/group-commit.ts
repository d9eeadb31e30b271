import { KMSInternalException } from '../errors/kms-errors';
import type { Logger } from '../logging/logger';
import type { RequestFields } from './audit-record';

export interface GroupCommitOptions {
  /** QKMS_AUDIT_FAIL_OPEN: answer the requests of a batch that could not be written (logged loudly). */
  isFailOpen: boolean;
  /** Told of every batch, written or failed (the metrics). */
  onBatch?: (batch: { records: number; seconds: number; isWritten: boolean }) => void;
  logger: Logger;
}

interface Pending {
  fields: RequestFields;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** One write stays small; what does not fit waits for the next batch. */
const MAX_BATCH_RECORDS = 1000;

/**
 * Group commit, whatever the trail is written to: records wait in a queue while one batch is being
 * committed, and the next batch takes all of them. Callers' promises resolve only once `write`
 * returned (the batch is durable); when it throws they reject with KMSInternalException (or,
 * fail-open, resolve after a loud log line). `write` must leave nothing of a batch it fails.
 */
export class GroupCommit {
  private queue: Pending[] = [];
  private committing?: Promise<void>;
  private isClosed = false;

  constructor(
    private readonly write: (batch: RequestFields[]) => Promise<void>,
    private readonly options: GroupCommitOptions,
  ) {}

  record(fields: RequestFields): Promise<void> {
    if (this.isClosed) return Promise.reject(KMSInternalException.notAudited(new Error('the audit trail is closed')));
    return new Promise((resolve, reject) => {
      this.queue.push({ fields, resolve, reject });
      this.commitNext();
    });
  }

  /** Commits what is queued; later records are refused. */
  async close(): Promise<void> {
    this.isClosed = true;
    while (this.committing) await this.committing;
  }

  private commitNext(): void {
    if (this.committing || this.queue.length === 0) return;
    const batch = this.queue.splice(0, MAX_BATCH_RECORDS);
    this.committing = this.commit(batch).finally(() => {
      this.committing = undefined;
      this.commitNext();
    });
  }

  private async commit(batch: Pending[]): Promise<void> {
    const started = performance.now();
    const done = (isWritten: boolean) => this.options.onBatch?.({ records: batch.length, seconds: (performance.now() - started) / 1000, isWritten });
    try {
      await this.write(batch.map((p) => p.fields));
    } catch (err) {
      done(false);
      this.fail(batch, err);
      return;
    }
    done(true);
    for (const p of batch) p.resolve();
  }

  private fail(batch: Pending[], err: unknown): void {
    const details = { records: batch.length, requestIds: batch.map((p) => p.fields.requestId), cause: err instanceof Error ? err.message : String(err) };
    if (this.options.isFailOpen) {
      this.options.logger.error('AUDIT WRITE FAILED: QKMS_AUDIT_FAIL_OPEN is on, so these requests are answered WITHOUT an audit record', details);
      for (const p of batch) p.resolve();
      return;
    }
    this.options.logger.error('AUDIT WRITE FAILED: these requests fail with KMSInternalException and return no result', details);
    const error = KMSInternalException.notAudited(err);
    for (const p of batch) p.reject(error);
  }
}
