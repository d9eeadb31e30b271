import { mergeCallStats } from '../call-stats';
import type { TokenCapabilities } from '../capabilities';
import { HSM_CALLS, type Hsm, type HsmHealth, type HsmStats } from '../hsm';
import { ModuleLockSlots } from '../pkcs11/module-lock';
import { AbandonedThreads } from './abandoned-threads';
import { HsmThread, type HsmThreadOptions } from './hsm-thread';

/** A thread whose one call has run this long is not given a second: the call may be slow (a stuck thread is replaced only after QKMS_HSM_TIMEOUT_MS). */
const PIPELINE_MS = 20;

export interface HsmThreadsOptions extends HsmThreadOptions {
  /** QKMS_HSM_THREADS: how many HSM threads share the work (and QKMS_PKCS11_SESSIONS among them). */
  threads: number;
}

// The HSM calls are forwarded generically (constructor); this declares them for the compiler.
export interface HsmThreads extends Pick<Hsm, (typeof HSM_CALLS)[number]> {}

/**
 * Several HSM threads (hsm-thread.ts) in front of one PKCS#11 module: each call goes to a thread
 * that is free, among those whose token answers, or waits here for one (freeThread says what free
 * means). A thread runs its calls one at a time, synchronously, so on a network HSM, where a call mostly waits for the device's
 * answer, the threads are what lets calls overlap: each waits on its own sessions while the others
 * call. On a local token (SoftHSM2) one thread is usually enough: the calls take CPU, not waiting.
 *
 * The threads share the module: C_Finalize by one of them (a recycle, a reconnect) waits until no
 * other is inside it (module-lock.ts), and the others reconnect afterwards. They share the budget
 * of abandoned threads too. Each has its own watchdog, circuit breaker and sessions.
 */
export class HsmThreads implements Hsm {
  private readonly upThreads = new Set<number>();
  /** Calls no thread is free for yet (with several threads), oldest first. */
  private readonly waiting: Array<{ method: string; args: unknown[]; resolve: (v: unknown) => void; reject: (e: unknown) => void }> = [];

  private constructor(
    private readonly threads: HsmThread[],
    private readonly options: HsmThreadsOptions,
  ) {
    for (const name of HSM_CALLS) (this as Record<string, unknown>)[name] = (...args: unknown[]) => this.call(name, args);
    threads.forEach((_, i) => this.upThreads.add(i));
  }

  /**
   * The first thread opens the token and finds its capabilities; the others are given them. A
   * wrong PIN or label fails here.
   */
  static async open(options: HsmThreadsOptions): Promise<HsmThreads> {
    const threads: HsmThread[] = [];
    let pool: HsmThreads | undefined;
    const abandoned = new AbandonedThreads((remaining) => {
      options.onThreadEvent?.({ type: 'left', remaining });
      for (const t of threads) t.threadLeft(remaining);
    });
    const shared = { lockSlots: new ModuleLockSlots(), abandoned };
    const sessions = Math.max(1, Math.ceil(options.sessions / options.threads));
    const threadOptions = (i: number, capabilities?: TokenCapabilities): HsmThreadOptions => ({
      ...options,
      sessions,
      capabilities,
      shared,
      onStateChange: (isUp, detail) => pool?.threadState(i, isUp, detail),
    });
    try {
      threads.push(await HsmThread.open(threadOptions(0, options.capabilities)));
      const capabilities = threads[0].capabilities();
      for (let i = 1; i < options.threads; i++) threads.push(await HsmThread.open(threadOptions(i, capabilities)));
    } catch (err) {
      await closeAll(threads);
      throw err;
    }
    pool = new HsmThreads(threads, options);
    return pool;
  }

  capabilities(): TokenCapabilities {
    return this.threads[0].capabilities();
  }

  /** Up while any thread's token answers; asked of one that does. */
  async health(): Promise<HsmHealth> {
    const thread = this.pick();
    return thread.health();
  }

  stats(): HsmStats {
    const all = this.threads.map((t) => t.stats());
    return {
      isUp: all.some((s) => s.isUp),
      sessions: {
        size: sum(all.map((s) => s.sessions.size)),
        inUse: sum(all.map((s) => s.sessions.inUse)),
        waiters: sum(all.map((s) => s.sessions.waiters)),
      },
      queuedCalls: this.pendingCalls(),
      pkcs11: all.reduce((merged, s) => mergeCallStats(merged, s.pkcs11), {}),
    };
  }

  pendingCalls(): number {
    let pending = this.waiting.length;
    for (const t of this.threads) pending += t.pendingCalls();
    return pending;
  }

  /** The others first, keeping the module initialised; the first thread closes and finalises it last. */
  async close(): Promise<void> {
    await closeAll(this.threads);
  }

  private call(method: string, args: unknown[]): Promise<unknown> {
    const free = this.freeThread();
    if (free) return this.send(free, method, args);
    return new Promise((resolve, reject) => this.waiting.push({ method, args, resolve, reject }));
  }

  private send(thread: HsmThread, method: string, args: unknown[]): Promise<unknown> {
    const sent = (thread as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[method](...args);
    if (this.threads.length > 1) void sent.finally(() => this.feed()).catch(() => undefined);
    return sent;
  }

  /** A thread that finished a call takes the longest-waiting one. */
  private feed(): void {
    for (let free = this.freeThread(); free && this.waiting.length > 0; free = this.freeThread()) {
      const next = this.waiting.shift()!;
      this.send(free, next.method, next.args).then(next.resolve, next.reject);
    }
  }

  /**
   * With one thread, that thread: its calls queue in it. With several, among those whose token
   * answers (else among all): one without a call; else one with a single call that started less
   * than PIPELINE_MS ago, the most recent, so that it finds its next call waiting when it answers
   * rather than idle for the round trip through this event loop; else none, and the call waits
   * here for whichever is free first. So a call never waits behind a slow one while another
   * thread can take it.
   */
  private freeThread(): HsmThread | undefined {
    if (this.threads.length === 1) return this.threads[0];
    const anyUp = this.threads.some((t) => t.isUp);
    let second: HsmThread | undefined;
    for (const t of this.threads) {
      if (anyUp && !t.isUp) continue;
      if (t.pendingCalls() === 0) return t;
      if (t.pendingCalls() === 1 && t.busySince! > performance.now() - PIPELINE_MS && (!second || t.busySince! > second.busySince!)) second = t;
    }
    return second;
  }

  /** A thread for a call that does not queue (health): one whose token answers, the least busy. */
  private pick(): HsmThread {
    const anyUp = this.threads.some((t) => t.isUp);
    let best: HsmThread | undefined;
    for (const t of this.threads) {
      if (anyUp && !t.isUp) continue;
      if (!best || t.pendingCalls() < best.pendingCalls()) best = t;
    }
    return best ?? this.threads[0];
  }

  /** One thread's circuit opened or closed: the log hears when the first goes down and when the last is back. */
  private threadState(i: number, isUp: boolean, detail: string): void {
    const wasAllUp = this.upThreads.size === this.threads.length;
    if (isUp) this.upThreads.add(i);
    else this.upThreads.delete(i);
    const isAllUp = this.upThreads.size === this.threads.length;
    if (wasAllUp !== isAllUp) this.options.onStateChange?.(isAllUp, this.threads.length > 1 ? `${detail} (HSM thread ${i + 1} of ${this.threads.length})` : detail);
  }
}

async function closeAll(threads: HsmThread[]): Promise<void> {
  await Promise.all(threads.slice(1).map((t) => t.close({ finalize: false })));
  await threads[0]?.close();
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
