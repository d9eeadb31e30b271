/**
 * Latency and errors of each PKCS#11 function (C_WrapKey, C_Sign…), kept as cumulative totals
 * with fixed histogram buckets, so that they are cheap to record on the hot path (two clock reads,
 * a short bucket scan, no allocation) and cheap to ship from the HSM thread (a small plain object).
 * Cumulative, not drained: several readers (two gateways over one token in the tests) each see
 * the module's totals since open.
 */

/**
 * Upper bounds in seconds. SoftHSM2's symmetric calls take 10-70 µs (STYLE.md habit 11), a network
 * HSM's a few ms, an RSA key-pair generation seconds: the buckets span all three.
 */
export const PKCS11_LATENCY_BUCKETS_SECONDS: readonly number[] = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface FunctionStats {
  count: number;
  sumSeconds: number;
  /** Calls per bucket (not cumulative); one more entry than the bounds, for slower than the last. */
  buckets: number[];
  /** Failed calls by CKR name ('unknown' when the error carried none). */
  errors: Record<string, number>;
}

/** By PKCS#11 function name. */
export type CallStats = Record<string, FunctionStats>;

export class CallRecorder {
  private readonly byFunction = new Map<string, FunctionStats>();

  record(fn: string, seconds: number, ckr?: string): void {
    let s = this.byFunction.get(fn);
    if (!s) {
      s = { count: 0, sumSeconds: 0, buckets: new Array<number>(PKCS11_LATENCY_BUCKETS_SECONDS.length + 1).fill(0), errors: {} };
      this.byFunction.set(fn, s);
    }
    s.count++;
    s.sumSeconds += seconds;
    let i = 0;
    while (i < PKCS11_LATENCY_BUCKETS_SECONDS.length && seconds > PKCS11_LATENCY_BUCKETS_SECONDS[i]) i++;
    s.buckets[i]++;
    if (ckr !== undefined) s.errors[ckr] = (s.errors[ckr] ?? 0) + 1;
  }

  /** Calls per function, for the benchmark's calls-per-operation table. */
  counts(): Record<string, number> {
    return Object.fromEntries([...this.byFunction].map(([fn, s]) => [fn, s.count]));
  }

  /** A copy, safe to post to another thread or keep. */
  snapshot(): CallStats {
    return mergeCallStats({}, Object.fromEntries(this.byFunction));
  }
}

/** a + b, as a new object (the HSM thread folds a replaced thread's totals into the new one's). */
export function mergeCallStats(a: CallStats, b: CallStats): CallStats {
  const out: CallStats = {};
  for (const [fn, s] of [...Object.entries(a), ...Object.entries(b)]) {
    const t = (out[fn] ??= { count: 0, sumSeconds: 0, buckets: new Array<number>(s.buckets.length).fill(0), errors: {} });
    t.count += s.count;
    t.sumSeconds += s.sumSeconds;
    s.buckets.forEach((n, i) => (t.buckets[i] += n));
    for (const [ckr, n] of Object.entries(s.errors)) t.errors[ckr] = (t.errors[ckr] ?? 0) + n;
  }
  return out;
}
