import type { Worker } from 'node:worker_threads';

/**
 * HSM threads abandoned while stuck in a PKCS#11 call, kept until they have left the module. A
 * thread in native code cannot be stopped: worker.terminate() takes effect only when the call
 * returns, so the thread's 'exit' event is the proof that it left. Until every abandoned thread
 * has, nothing may call C_Finalize or unload the module: that is undefined behaviour for a thread
 * inside it. Key-pair generations the thread started on the libuv pool hold its exit back too.
 */
export class AbandonedThreads {
  private readonly inside = new Set<Worker>();

  /** `onLeft` is told each time one leaves, with how many are still inside. */
  constructor(private readonly onLeft: (remaining: number) => void) {}

  get count(): number {
    return this.inside.size;
  }

  /** Terminates the thread (at once, unless it is in a call) and counts it until it has exited. */
  abandon(worker: Worker): void {
    if (worker.threadId !== -1 && !this.inside.has(worker)) {
      // threadId is -1 once the thread has stopped: a thread that exited by itself is not inside.
      this.inside.add(worker);
      worker.once('exit', () => {
        this.inside.delete(worker);
        this.onLeft(this.inside.size);
      });
    }
    void worker.terminate().catch(() => undefined);
  }
}
