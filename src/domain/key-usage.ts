import type { KeyLastUsage, KeyRepository } from './key-repository';

/** The operations GetKeyLastUsage reports (KeyLastUsageTrackingOperation in the AWS model). */
export const TRACKED_OPERATIONS: ReadonlySet<string> = new Set([
  'Decrypt', 'DeriveSharedSecret', 'Encrypt', 'GenerateDataKey', 'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext',
  'GenerateDataKeyWithoutPlaintext', 'GenerateMac', 'ReEncrypt', 'Sign', 'Verify', 'VerifyMac',
]);

/** How often this process writes the usage it saw to the store (and so how far another replica's answer may lag). */
export const USAGE_FLUSH_MS = 5000;

/**
 * Each key's last successful cryptographic operation (GetKeyLastUsage), noted in memory as requests
 * succeed and written to the store every USAGE_FLUSH_MS — one small write per key and interval,
 * not one per request on the hot path. This process answers from its own notes where they are
 * newer than the store's; another replica's lag by up to the interval, and a process killed loses
 * its last interval's notes (it records usage, not data: the audit trail has every request).
 */
export class KeyUsageTracker {
  private pending = new Map<string, KeyLastUsage>();
  /** The notes a flush is writing now: still this process's to answer with until written. */
  private writing = new Map<string, KeyLastUsage>();
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly keys: Pick<KeyRepository, 'recordKeyUsage'>,
    private readonly onError: (err: unknown) => void,
  ) {
    this.timer = setInterval(() => void this.flush(), USAGE_FLUSH_MS);
    this.timer.unref();
  }

  /** A use of the key's record in `region` (a multi-Region key's records are used, and reported, apart). */
  note(keyId: string, region: string, operation: string, requestId: string, at = new Date()): void {
    const seen = this.pending.get(`${region}/${keyId}`);
    if (!seen || seen.at <= at) this.pending.set(`${region}/${keyId}`, { keyId, region, operation, at, requestId });
  }

  /** This process's note for the key's record in `region` not yet written, if any. */
  unwritten(keyId: string, region: string): KeyLastUsage | undefined {
    return this.pending.get(`${region}/${keyId}`) ?? this.writing.get(`${region}/${keyId}`);
  }

  /** Writes what was noted; a failed write keeps the notes for the next (older ones give way to newer). */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      if (this.pending.size === 0) return;
      const batch = this.pending;
      this.writing = batch;
      this.pending = new Map();
      try {
        await this.keys.recordKeyUsage([...batch.values()]);
      } catch (err) {
        for (const [slot, u] of batch) if (!this.pending.has(slot)) this.pending.set(slot, u);
        this.onError(err);
      } finally {
        this.writing = new Map();
      }
    });
    return this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
