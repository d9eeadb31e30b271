/**
 * Where the tokens of the per-principal rate-limit buckets live (src/http/rate-limit.ts): this
 * process (LocalTokenPool), or the store every replica shares (PostgresTokenPool), so that a
 * principal's rate holds for the whole deployment.
 */
export interface TokenPool {
  /** Whether other processes take from the same buckets (then tokens are taken a few at a time). */
  readonly isShared: boolean;
  /**
   * Takes up to `want` tokens from the principal's bucket, which refills at `rate` per second up to
   * `capacity`; resolves to how many it got (0 when the bucket is empty).
   */
  take(principal: string, rate: number, capacity: number, want: number): Promise<number>;
}

/** The buckets in this process's memory: the single-process gateway. */
export class LocalTokenPool implements TokenPool {
  readonly isShared = false;
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  async take(principal: string, rate: number, capacity: number, want: number): Promise<number> {
    const t = this.now();
    const bucket = this.buckets.get(principal) ?? { tokens: capacity, at: t };
    bucket.tokens = Math.min(capacity, bucket.tokens + ((t - bucket.at) / 1000) * rate);
    bucket.at = t;
    this.buckets.set(principal, bucket);
    const got = Math.min(want, Math.floor(bucket.tokens));
    bucket.tokens -= got;
    return got;
  }
}
