import { callTimeoutMs, HSM_CALLS, type Hsm, type HsmHealth } from './hsm';
import { HsmError } from './hsm-error';

/**
 * Bounds every HSM call by a deadline: past it the caller gets HsmError kind 'timeout'
 * (DependencyTimeoutException on the wire); key-pair generation gets at least SLOW_CALL_TIMEOUT_MS. With the HSM thread (QKMS_HSM_THREAD) the event loop
 * is free to answer at the deadline, and the thread's watchdog replaces a thread stuck in a call;
 * on the event loop (QKMS_HSM_THREAD=false) a synchronous call is only found late once it returns.
 */
export function withDeadline(inner: Hsm, defaultTimeoutMs: number): Hsm {
  const wrap =
    (name: string, fn: (...args: unknown[]) => Promise<unknown>) =>
    (...args: unknown[]): Promise<unknown> => {
      const started = performance.now();
      const timeoutMs = callTimeoutMs(name, defaultTimeoutMs);
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new HsmError('timeout', name)), timeoutMs);
      });
      const work = fn.apply(inner, args).then((result) => {
        if (performance.now() - started > timeoutMs) throw new HsmError('timeout', name);
        return result;
      });
      return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
    };
  const calls = Object.fromEntries(HSM_CALLS.map((name) => [name, wrap(name, inner[name] as (...args: unknown[]) => Promise<unknown>)]));
  return {
    ...(calls as Pick<Hsm, (typeof HSM_CALLS)[number]>),
    health: () => wrap('health', inner.health)().then((h) => h as HsmHealth, (err: unknown) => ({ isUp: false, detail: err instanceof Error ? err.message : String(err) })),
    capabilities: () => inner.capabilities(),
    stats: () => inner.stats(),
    pendingCalls: () => inner.pendingCalls(),
    close: () => inner.close(),
  };
}
