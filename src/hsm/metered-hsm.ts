import { HSM_CALLS, type Hsm } from './hsm';
import { HsmError, type HsmErrorKind } from './hsm-error';

/** Told of every Hsm call once it settles: its latency, and the HsmError kind when it failed. */
export interface HsmCallObserver {
  hsmCall(method: string, seconds: number, errorKind?: HsmErrorKind): void;
}

/**
 * Times every Hsm call (HSM_CALLS; not health, which probes poll) as the operations see it: wrapped around the
 * deadline, so a call past QKMS_HSM_TIMEOUT_MS counts as kind 'timeout' at its deadline. An error
 * that is not an HsmError counts as 'internal'. Neither arguments nor results are looked at.
 */
export function withMetrics(inner: Hsm, observer: HsmCallObserver): Hsm {
  const wrap =
    (name: string, fn: (...args: unknown[]) => Promise<unknown>) =>
    (...args: unknown[]): Promise<unknown> => {
      const started = performance.now();
      const seconds = () => (performance.now() - started) / 1000;
      return fn.apply(inner, args).then(
        (result) => {
          observer.hsmCall(name, seconds());
          return result;
        },
        (err: unknown) => {
          observer.hsmCall(name, seconds(), err instanceof HsmError ? err.kind : 'internal');
          throw err;
        },
      );
    };
  const calls = Object.fromEntries(HSM_CALLS.map((name) => [name, wrap(name, inner[name] as (...args: unknown[]) => Promise<unknown>)]));
  return {
    ...(calls as Pick<Hsm, (typeof HSM_CALLS)[number]>),
    health: () => inner.health(),
    capabilities: () => inner.capabilities(),
    stats: () => inner.stats(),
    pendingCalls: () => inner.pendingCalls(),
    close: () => inner.close(),
  };
}
