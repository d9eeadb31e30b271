import crypto from 'node:crypto';
import type { ReplicaCoordination } from '../domain/replica-coordination';

/**
 * The embedded store's: one process per data dir (data-dir-lock.ts), so every intent not made by
 * this process was left by one that stopped, the scheduler is always this one's, and nothing runs
 * beside it.
 */
export class LocalCoordination implements ReplicaCoordination {
  readonly ownerId = crypto.randomUUID();

  async ifOwnerGone(owner: string | undefined, repair: () => Promise<void>): Promise<boolean> {
    if (owner === this.ownerId) return false;
    await repair();
    return true;
  }

  async holdsSchedulerLease(): Promise<boolean> {
    return true;
  }

  exclusively<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }

  /** Alone: this process's writes are all there are (the CLI's direct mode is seen within QKMS_KEY_CACHE_MS). */
  async announceKeyChange(): Promise<void> {}

  onKeyChange(): void {}

  async close(): Promise<void> {}
}
