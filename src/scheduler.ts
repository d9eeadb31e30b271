import { runDueLifecycleWork, type LifecycleDeps } from './domain/key-lifecycle';

/**
 * Runs due key deletions and automatic rotations every `intervalMs`, one run at a time. Tests do
 * not wait for it: they move the injected clock and call `tick()`.
 */
export class Scheduler {
  private timer?: NodeJS.Timeout;
  private running?: Promise<unknown>;

  constructor(
    private readonly deps: LifecycleDeps,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
  }

  async tick(): Promise<{ deleted: string[]; rotated: string[] }> {
    while (this.running) await this.running.catch(() => undefined);
    const run = runDueLifecycleWork(this.deps);
    this.running = run;
    try {
      return await run;
    } catch (err) {
      this.deps.logger.error('scheduled key work failed; retried on the next run', { cause: err instanceof Error ? err.message : String(err) });
      return { deleted: [], rotated: [] };
    } finally {
      this.running = undefined;
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }
}
