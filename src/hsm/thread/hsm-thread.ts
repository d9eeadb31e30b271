import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { mergeCallStats, type CallStats } from '../call-stats';
import { callTimeoutMs, HSM_CALLS, HSM_STATS_INTERVAL_MS, SLOW_BLOCKING_CALLS, SLOW_HSM_CALLS, type Hsm, type HsmHealth, type HsmStats } from '../hsm';
import { HsmError } from '../hsm-error';
import type { TokenCapabilities } from '../capabilities';
import type { Pkcs11Options } from '../pkcs11/pkcs11-hsm';
import { ModuleLockSlots } from '../pkcs11/module-lock';
import { AbandonedThreads } from './abandoned-threads';
import { fromWire, reviveBuffers, type Reply, type Request, type ThreadOptions } from './protocol';

export interface HsmThreadOptions extends Pkcs11Options {
  /** A thread silent this long while calls are outstanding is stuck in the module: it is replaced. */
  stuckAfterMs: number;
  /**
   * How many abandoned threads may be inside the module at once (QKMS_HSM_MAX_ABANDONED_THREADS,
   * default 3). One more stuck thread is not replaced: the circuit stays open for good.
   */
  maxAbandonedThreads?: number;
  /** Told when a stuck thread is abandoned and a new one started. */
  onReplaced?: (detail: string) => void;
  /** Told of the other events around abandoned threads, for the log. */
  onThreadEvent?: (event: ThreadEvent) => void;
  /**
   * Shared with the other HSM threads of the process (HsmThreads): their slots in the module lock
   * and the abandoned threads, whose budget is for the process. Unset: this thread's own.
   */
  shared?: { lockSlots: ModuleLockSlots; abandoned: AbandonedThreads };
}

export type ThreadEvent =
  /** An abandoned thread's call returned and the thread left the module; `remaining` are still inside. */
  | { type: 'left'; remaining: number }
  /** The budget of abandoned threads is spent: no more replacements, every call fails fast until a restart. */
  | { type: 'gave-up'; detail: string }
  /** close() leaves the module initialised because abandoned threads may still be inside it. */
  | { type: 'closing'; abandoned: number };

const DEFAULT_MAX_ABANDONED_THREADS = 3;

// The HSM calls are forwarded generically (constructor); this declares them for the compiler.
export interface HsmThread extends Pick<Hsm, (typeof HSM_CALLS)[number]> {}

interface Pending {
  method: string;
  args: unknown[];
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
  started: number;
}

/** A successful call this recent proves the token answers; /health then needs no probe of its own. */
const HEALTH_FRESH_MS = 1000;
const RETRY_MS = 1000;

/**
 * Hsm over a dedicated thread that owns the PKCS#11 module (hsm-worker.ts). The event loop that
 * serves HTTP never runs a PKCS#11 call, so a slow token, an RSA key generation or a hung call
 * cannot stall it; and the second core does the HSM work.
 *
 * A synchronous call that hangs cannot be interrupted inside its thread. The thread reports from its
 * own event loop several times per `stuckAfterMs` (its stats), so silence that long while calls are
 * outstanding means it is stuck in the module: a watchdog here fails the oldest call with HsmError
 * 'timeout' and starts a fresh thread that takes over the calls queued behind it. A call that only
 * waits — for a session held by slow key-pair generations on the libuv pool — is not a stuck thread:
 * its caller gets its deadline (DeadlineHsm) and the work in flight goes on. (C_Initialize answers
 * CKR_CRYPTOKI_ALREADY_INITIALIZED and C_Login CKR_USER_ALREADY_LOGGED_IN, both expected; it opens
 * its own sessions). The stuck thread is terminated; its sessions stay open until the process ends.
 *
 * An abandoned thread is still inside the module until its call returns (AbandonedThreads), so the
 * current thread is told not to C_Finalize until none is (mayFinalize): its circuit breaker heals
 * by reopening sessions, a due recycle waits, and close() leaves the module initialised. At most
 * maxAbandonedThreads may be inside at once; the next stuck thread is not replaced, the circuit
 * stays open and health() says to restart the process: a module that hung that many threads is in
 * no state to trust, and each abandoned thread holds a thread and sessions.
 */
export class HsmThread implements Hsm {
  private worker!: Worker;
  private ready!: Promise<void>;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private up = true;
  private lastSuccess = 0;
  /** When the current thread last sent anything (its heartbeat is the stats report). */
  private lastHeard = 0;
  private isStarted = false;
  private readonly watchdog: NodeJS.Timeout;
  private closed = false;
  /** The current thread's last report (HSM_STATS_INTERVAL_MS), and the totals of replaced threads. */
  private reported?: HsmStats;
  private retiredCalls: CallStats = {};
  private readonly abandoned: AbandonedThreads;
  private readonly lockSlots: ModuleLockSlots;
  /** Set when no more threads are replaced: why, for health(). */
  private gaveUp?: string;
  /** Found by the first thread; a replacement is given them rather than probing the token again. */
  private caps?: TokenCapabilities;
  /** Closing without C_Finalize: other HSM threads of the process still use the module. */
  private keepsModule = false;

  private constructor(private readonly options: HsmThreadOptions) {
    this.abandoned = options.shared?.abandoned ?? new AbandonedThreads((remaining) => this.threadLeft(remaining));
    this.lockSlots = options.shared?.lockSlots ?? new ModuleLockSlots();
    for (const name of HSM_CALLS) (this as Record<string, unknown>)[name] = (...args: unknown[]) => this.call(name, ...args);
    this.start();
    this.watchdog = setInterval(() => this.checkStuck(), heartbeatMs(options.stuckAfterMs));
    this.watchdog.unref();
  }

  /** Starts the thread and waits until it has opened the token; a wrong PIN or label fails here. */
  static async open(options: HsmThreadOptions): Promise<HsmThread> {
    const hsm = new HsmThread(options);
    try {
      await hsm.ready;
    } catch (err) {
      await hsm.close().catch(() => undefined);
      throw err;
    }
    return hsm;
  }

  /** Liveness without queueing behind the HSM work: the breaker's state and the last success, else a probe. */
  async health(): Promise<HsmHealth> {
    if (this.gaveUp) return { isUp: false, detail: this.gaveUp };
    if (!this.up) return { isUp: false, detail: 'token unavailable; reconnecting' };
    const age = performance.now() - this.lastSuccess;
    if (age < HEALTH_FRESH_MS) return { isUp: true, detail: `token answered ${Math.round(age)} ms ago` };
    return this.call('health');
  }

  capabilities(): TokenCapabilities {
    if (!this.caps) throw new HsmError('internal', 'capabilities', undefined, { cause: new Error('the HSM thread has not opened the token yet') });
    return this.caps;
  }

  /** Calls sent to the thread and not answered yet. */
  pendingCalls(): number {
    return this.pending.size;
  }

  /** When the oldest call not answered yet was sent (performance.now()), or undefined when none is. */
  get busySince(): number | undefined {
    for (const p of this.pending.values()) return p.started;
    return undefined;
  }

  get isUp(): boolean {
    return this.up;
  }

  /** From the thread's last report; the breaker state and the queue are this side's, so current. */
  stats(): HsmStats {
    return {
      isUp: this.up,
      sessions: this.reported?.sessions ?? { size: 0, inUse: 0, waiters: 0 },
      queuedCalls: this.pending.size,
      pkcs11: mergeCallStats(this.retiredCalls, this.reported?.pkcs11 ?? {}),
    };
  }

  /** `finalize: false`: the module stays initialised for other HSM threads of the process. */
  async close({ finalize = true }: { finalize?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!finalize) {
      this.keepsModule = true;
      this.worker.postMessage({ mayFinalize: false } satisfies Request);
    }
    clearInterval(this.watchdog);
    if (this.abandoned.count > 0) this.options.onThreadEvent?.({ type: 'closing', abandoned: this.abandoned.count });
    // The current thread was abandoned too: nothing to ask it, and terminate() would wait for its call.
    if (this.gaveUp) return;
    const worker = this.worker;
    // Sessions closed and C_Finalize (unless an abandoned thread is inside) in the thread, bounded: a stuck thread is cut off.
    await Promise.race([this.ready.then(() => this.call('close')).catch(() => undefined), new Promise((r) => setTimeout(r, 2000).unref())]);
    await worker.terminate();
  }

  private start(): void {
    const ext = path.extname(__filename);
    const moduleLock = this.lockSlots.take();
    let worker: Worker;
    try {
      worker = new Worker(path.join(__dirname, `hsm-worker${ext}`), {
        workerData: {
          ...this.options,
          shared: undefined,
          moduleLock,
          heartbeatMs: heartbeatMs(this.options.stuckAfterMs),
          mayFinalize: this.mayFinalize(),
          capabilities: this.caps,
          onStateChange: undefined,
          onRecycle: undefined,
          onReplaced: undefined,
          onThreadEvent: undefined,
        } satisfies ThreadOptions & Record<string, unknown>,
        // Under tsx (tests, bench) the worker is TypeScript too; the compiled gateway runs dist/*.js.
        execArgv: ext === '.ts' ? ['--require', require.resolve('tsx/cjs')] : [],
      });
    } catch (err) {
      this.lockSlots.free(moduleLock);
      throw err;
    }
    this.worker = worker;
    this.isStarted = false;
    this.lastHeard = performance.now();
    const current = () => worker === this.worker; // a replaced thread's late messages are dropped
    this.ready = new Promise<void>((resolve, reject) => {
      worker.on('message', (reply: Reply) => {
        if (!current()) return;
        this.lastHeard = performance.now();
        switch (reply.type) {
          case 'ready':
            this.isStarted = true;
            this.caps = reply.capabilities;
            return resolve();
          case 'state':
            return this.setUp(reply.isUp, reply.detail);
          case 'recycled':
            return this.options.onRecycle?.(reply.reason, reply.objects, reply.ms);
          case 'stats':
            this.reported = reply.stats;
            return;
          case 'result':
            // A health probe's answer may be "down": only HSM work proves the token answers.
            if (this.pending.get(reply.id)?.method !== 'health') this.lastSuccess = performance.now();
            return this.settle(reply.id, (p) => p.resolve(reviveBuffers(reply.value)));
          case 'error':
            if (reply.id === undefined) return reject(fromWire(reply.error));
            return this.settle(reply.id, (p) => p.reject(fromWire(reply.error)));
        }
      });
      worker.on('error', (err) => current() && reject(new HsmError('internal', 'hsm-thread', undefined, { cause: err })));
      worker.on('exit', () => {
        this.lockSlots.free(moduleLock); // whatever it counted there is void: it is out of the module
        if (!current() || this.closed) return;
        const gone = new HsmError('device', 'hsm-thread', undefined, { cause: new Error('the HSM thread exited') });
        reject(gone);
        const [first] = this.pending;
        if (this.isStarted) this.replace('the HSM thread exited', first && { id: first[0], err: gone });
      });
    });
    this.ready.catch((err: unknown) => {
      if (!current()) return;
      this.failAll(err instanceof HsmError ? err : new HsmError('device', 'hsm-thread', undefined, { cause: err }));
    });
  }

  /** The current thread may C_Finalize: no abandoned thread is inside the module (and the owner allows it). */
  private mayFinalize(): boolean {
    return this.options.mayFinalize !== false && !this.keepsModule && this.abandoned.count === 0;
  }

  /** An abandoned thread left the module (with HsmThreads, any of the process's). */
  threadLeft(remaining: number): void {
    if (!this.options.shared) this.options.onThreadEvent?.({ type: 'left', remaining });
    if (!this.closed && !this.gaveUp && this.mayFinalize()) this.worker.postMessage({ mayFinalize: true } satisfies Request);
  }

  private setUp(isUp: boolean, detail: string): void {
    if (isUp === this.up || (isUp && this.gaveUp)) return;
    this.up = isUp;
    this.options.onStateChange?.(isUp, detail);
  }

  private call<T>(method: string, ...args: unknown[]): Promise<T> {
    if (this.closed && method !== 'close') return Promise.reject(new HsmError('device', method, undefined, { cause: new Error('the HSM is closed') }));
    // Circuit open (reported by the thread's breaker, or no thread could start): fail fast.
    if (!this.up && method !== 'close' && method !== 'health') return Promise.reject(new HsmError('device', method, 'CKR_DEVICE_REMOVED'));
    return new Promise<T>((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { method, args, resolve: resolve as (v: unknown) => void, reject, started: performance.now() });
      this.worker.postMessage({ id, method, args } satisfies Request);
    });
  }

  private settle(id: number, fn: (p: Pending) => void): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    fn(p);
  }

  private failAll(err: HsmError): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(err);
  }

  private checkStuck(): void {
    if (this.pending.size === 0 || this.gaveUp) return;
    const now = performance.now();
    // A thread opening the token (C_Initialize, login), or in a slow call that runs on it (listing
    // a large token), is silent until it is done: it gets the slow limit.
    const isSlowByNature = !this.isStarted || [...this.pending.values()].some((p) => SLOW_BLOCKING_CALLS.has(p.method));
    const silentLimit = isSlowByNature ? callTimeoutMs('generateKeyPair', this.options.stuckAfterMs) : this.options.stuckAfterMs;
    if (now - this.lastHeard >= silentLimit) {
      const oldest = [...this.pending].find(([, p]) => !SLOW_HSM_CALLS.has(p.method)) ?? [...this.pending][0];
      this.replaceStuck(`the HSM thread has not answered for ${Math.round(now - this.lastHeard)} ms (stuck in ${oldest[1].method})`, { id: oldest[0], err: new HsmError('timeout', oldest[1].method) });
      return;
    }
    // The thread answers, but a key-pair generation on its libuv pool never settles.
    for (const [id, p] of this.pending) {
      const limit = callTimeoutMs(p.method, this.options.stuckAfterMs);
      if (SLOW_HSM_CALLS.has(p.method) && now - p.started >= limit) {
        this.replaceStuck(`a PKCS#11 call (${p.method}) ran past ${limit} ms`, { id, err: new HsmError('timeout', p.method) });
        return;
      }
    }
  }

  /** A stuck thread is replaced while the budget of abandoned threads lasts. */
  private replaceStuck(detail: string, failed: { id: number; err: HsmError }): void {
    if (this.abandoned.count >= (this.options.maxAbandonedThreads ?? DEFAULT_MAX_ABANDONED_THREADS)) this.giveUp(detail, failed);
    else this.replace(detail, failed);
  }

  /**
   * Abandons the current thread (terminated; a call stuck in native code cannot be) and starts
   * another. Synchronous calls run one at a time in arrival order, so the calls queued behind the
   * stuck one never started: they go to the new thread. The stuck call fails with `failed.err`, and
   * so does any key-pair generation in flight on the libuv pool (it may have started; re-sending it
   * could make a second pair — CreateKey cleans up after a failure). While no thread can start (the
   * token is down too) calls fail fast, retried every second.
   */
  private replace(detail: string, failed?: { id: number; err: HsmError }): void {
    if (this.closed || this.gaveUp) return;
    if (failed) {
      this.settle(failed.id, (p) => p.reject(failed.err));
      for (const [id, p] of this.pending) if (SLOW_HSM_CALLS.has(p.method)) this.settle(id, (q) => q.reject(new HsmError('timeout', p.method)));
    }
    this.retire(this.worker); // before start(): the new thread must know it is not alone in the module
    this.start();
    for (const [id, p] of this.pending) {
      p.started = performance.now();
      this.worker.postMessage({ id, method: p.method, args: p.args });
    }
    this.options.onReplaced?.(detail);
    this.ready.then(
      () => this.setUp(true, 'a new HSM thread answers'),
      (startErr: unknown) => {
        this.setUp(false, startErr instanceof Error ? startErr.message : String(startErr));
        setTimeout(() => this.replace('retrying after a failed start'), RETRY_MS).unref();
      },
    );
  }

  /**
   * The replacement budget is spent: the stuck thread is abandoned like the others, but none is
   * started; every call fails fast (HsmError 'device': KeyUnavailableException) until a restart.
   */
  private giveUp(detail: string, failed: { id: number; err: HsmError }): void {
    this.settle(failed.id, (p) => p.reject(failed.err));
    this.retire(this.worker);
    const max = this.options.maxAbandonedThreads ?? DEFAULT_MAX_ABANDONED_THREADS;
    const stuck = this.abandoned.count;
    this.gaveUp = `${stuck} HSM thread${stuck === 1 ? ' is' : 's are'} stuck in PKCS#11 calls, more than QKMS_HSM_MAX_ABANDONED_THREADS=${max}: no more are replaced; restart the process`;
    this.failAll(new HsmError('device', 'hsm-thread', undefined, { cause: new Error(this.gaveUp) }));
    this.options.onThreadEvent?.({ type: 'gave-up', detail: `${detail}; ${this.gaveUp}` });
    this.up = false; // not setUp: onStateChange would announce a reconnect that will not come
  }

  /** Keeps a thread's last totals (the counters must not go back) and abandons it. */
  private retire(worker: Worker): void {
    this.retiredCalls = mergeCallStats(this.retiredCalls, this.reported?.pkcs11 ?? {});
    this.reported = undefined;
    this.abandoned.abandon(worker);
  }
}

/** How often the thread reports (its heartbeat) and the watchdog looks: several times per stuckAfterMs, at most every second. */
function heartbeatMs(stuckAfterMs: number): number {
  return Math.max(10, Math.min(HSM_STATS_INTERVAL_MS, stuckAfterMs / 4));
}
