import { RetryBackoff, runDueLifecycleWork, type LifecycleDeps } from './domain/key-lifecycle';

/**
 * Runs stale-intent rollbacks, due key deletions and automatic rotations at start and then every
 * `intervalMs`, one run at a time; a key whose work failed waits (RetryBackoff) while the others go
 * on. Tests do not wait for it: they move the injected clock and call `tick()`.
 */
export class Scheduler {
  private timer?: NodeJS.Timeout;
  private running?: Promise<unknown>;
  private readonly backoff = new RetryBackoff();

  constructor(
    private readonly deps: LifecycleDeps,
    private readonly intervalMs: number,
  ) {}

  /** First run now: a deletion a crash interrupted resumes at once, not an interval later. */
  start(): void {
    setImmediate(() => void this.tick());
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
  }

  /** Keys waiting for a retry after a failure. */
  get keysInBackoff(): number {
    return this.backoff.size;
  }

  async tick(): Promise<{ deleted: string[]; rotated: string[]; rolledBack: number }> {
    while (this.running) await this.running.catch(() => undefined);
    const run = runDueLifecycleWork(this.deps, this.backoff);
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
}
