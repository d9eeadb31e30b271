import type { Hsm } from './hsm';
import { HsmError, type HsmErrorKind } from './hsm-error';

type Method = Exclude<keyof Hsm, 'close' | 'stats' | 'capabilities' | 'pendingCalls'>;

export interface FaultRule {
  method: Method | '*';
  /** How many calls the rule applies to; Infinity until cleared. */
  times: number;
  delayMs?: number;
  fail?: { kind: HsmErrorKind; ckr?: string };
}

/**
 * Decorator over any Hsm with scripted failures and delays, for tests and drills. Wired in only by
 * tests (createApp receives the Hsm); the gateway's main never builds one.
 */
export class FaultInjectingHsm {
  private rules: FaultRule[] = [];
  readonly hsm: Hsm;

  constructor(inner: Hsm) {
    const handler: ProxyHandler<Hsm> = {
      get: (target, prop: string) => {
        const original = Reflect.get(target, prop) as unknown;
        // stats and capabilities read memory synchronously (no HSM work to fail or delay).
        if (typeof original !== 'function' || prop === 'close' || prop === 'stats' || prop === 'capabilities' || prop === 'pendingCalls') return typeof original === 'function' ? original.bind(target) : original;
        return async (...args: unknown[]) => {
          const rule = this.take(prop as Method);
          if (rule?.delayMs) await new Promise((r) => setTimeout(r, rule.delayMs));
          if (rule?.fail) throw new HsmError(rule.fail.kind, prop, rule.fail.ckr);
          return (original as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    };
    this.hsm = new Proxy(inner, handler);
  }

  add(rule: FaultRule): void {
    this.rules.push({ ...rule });
  }

  clear(): void {
    this.rules = [];
  }

  /** Whether a rule still applies to a coming call. */
  get armed(): boolean {
    return this.rules.some((r) => r.times > 0);
  }

  private take(method: Method): FaultRule | undefined {
    const rule = this.rules.find((r) => (r.method === method || r.method === '*') && r.times > 0);
    if (rule) rule.times--;
    return rule;
  }
}
