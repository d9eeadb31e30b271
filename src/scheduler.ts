import { RetryBackoff, runDueLifecycleWork, type LifecycleDeps } from './domain/key-lifecycle';

type TickResult = { deleted: string[]; rotated: string[]; rolledBack: number };

/** Among replicas, who runs the scheduled work (ReplicaCoordination.holdsSchedulerLease). */
export interface SchedulerLease {
  holds(): Promise<boolean>;
  /** How often a replica without the lease tries to take it: how soon it takes over from one that died. */
  takeoverMs: number;
}

/** A single process always holds it. */
const ALONE: SchedulerLease = { holds: async () => true, takeoverMs: Number.POSITIVE_INFINITY };

/**
 * Runs stale-intent rollbacks, due key deletions and automatic rotations at start and then every
 * `intervalMs`, one run at a time; a key whose work failed waits (RetryBackoff) while the others go
 * on. Among replicas only the lease holder runs it: every run checks the lease first, and the
 * others try to take it every `takeoverMs`, running at once when they get it. Tests do not wait
 * for it: they move the injected clock and call `tick()`.
 */
export class Scheduler {
  private timer?: NodeJS.Timeout;
  private running?: Promise<unknown>;
  private readonly backoff = new RetryBackoff();
  private isHolder = false;
  private pollsSinceRun = 0;

  constructor(
    private readonly deps: LifecycleDeps,
    private readonly intervalMs: number,
    private readonly lease: SchedulerLease = ALONE,
  ) {}

  /** First run now: a deletion a crash interrupted resumes at once, not an interval later. */
  start(): void {
    const pollMs = Math.min(this.intervalMs, this.lease.takeoverMs);
    const pollsPerRun = Math.max(1, Math.round(this.intervalMs / pollMs));
    setImmediate(() => void this.tick());
    this.timer = setInterval(() => {
      // The holder runs every intervalMs; a replica without the lease asks for it at every poll.
      if (this.isHolder && ++this.pollsSinceRun < pollsPerRun) return;
      void this.tick();
    }, pollMs);
    this.timer.unref();
  }

  /** Keys waiting for a retry after a failure. */
  get keysInBackoff(): number {
    return this.backoff.size;
  }

  async tick(): Promise<TickResult> {
    while (this.running) await this.running.catch(() => undefined);
    this.pollsSinceRun = 0;
    const run = this.runIfHolder();
    this.running = run;
    try {
      return await run;
    } catch (err) {
      // Listing the due work failed (the store): nothing was started; the next run lists again.
      this.deps.logger.error('scheduled key work could not start; retried on the next run', { cause: err instanceof Error ? err.message : String(err) });
      return { deleted: [], rotated: [], rolledBack: 0 };
    } finally {
      this.running = undefined;
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }

  private async runIfHolder(): Promise<TickResult> {
    const isHolder = await this.lease.holds();
    if (isHolder !== this.isHolder) {
      this.isHolder = isHolder;
      if (isHolder) this.deps.logger.info('scheduler lease taken: this replica runs the scheduled key work');
      else this.deps.logger.warn('scheduler lease lost: another replica runs the scheduled key work');
    }
    if (!isHolder) return { deleted: [], rotated: [], rolledBack: 0 };
    return runDueLifecycleWork(this.deps, this.backoff);
  }
}
