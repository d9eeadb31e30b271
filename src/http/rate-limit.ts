import type { NextFunction, Request, Response } from 'express';
import { ThrottlingException } from '../errors/kms-errors';
import { locals } from './request-context';

/**
 * Where the tokens of the per-principal buckets live: this process (LocalTokenPool), or a store
 * every replica shares, so that a principal's rate holds for the whole deployment.
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

/**
 * A shared pool is asked for this share of a second's rate at a time: one store round trip per
 * ~5 % of the rate, and at most that much held unused per replica (which is what bounds the error
 * of the deployment-wide rate).
 */
const SHARED_CHUNK = 1 / 20;
/** Tokens a process took but did not use lapse after this long, so none are saved up for a burst. */
const HELD_FOR_MS = 1000;

/**
 * Per-principal token buckets: `rate` requests per second sustained, bursts up to one second's
 * worth. A principal's own `rateLimitPerSecond` (credentials file) overrides the default; 0 means
 * unlimited. Over the limit: ThrottlingException, which the SDKs retry with backoff. With a shared
 * pool the limit is the deployment's, not each replica's. A pool that fails (its store is down)
 * lets the request through: throttling must not add an outage of its own.
 */
export function rateLimit(defaultPerSecond: number, pool: TokenPool = new LocalTokenPool(), now: () => number = () => performance.now()) {
  /** Per principal: tokens taken and not used yet (until they lapse), or, after an empty answer, when to ask again. */
  const held = new Map<string, { tokens: number; until: number; emptyUntil?: number }>();
  const throttled = () => new ThrottlingException('You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.');
  return (_req: Request, res: Response, next: NextFunction): void => {
    const principal = locals(res).principal!;
    const rate = principal.rateLimitPerSecond ?? defaultPerSecond;
    if (rate <= 0) return next();
    const id = principal.accessKeyId;
    const mine = held.get(id);
    const t = now();
    if (mine && mine.tokens >= 1 && mine.until > t) {
      mine.tokens -= 1;
      return next();
    }
    const want = pool.isShared ? Math.max(1, Math.floor(rate * SHARED_CHUNK)) : 1;
    // A shared bucket found empty is not asked again before a chunk could have refilled: a client
    // far over its rate costs the store a round trip per chunk, not per request.
    if (pool.isShared && mine?.emptyUntil !== undefined && mine.emptyUntil > t) return next(throttled());
    pool.take(id, rate, Math.max(1, rate), want).then(
      (got) => {
        if (got < 1) {
          held.set(id, { tokens: 0, until: 0, emptyUntil: now() + (want / rate) * 1000 });
          return next(throttled());
        }
        held.set(id, { tokens: got - 1, until: now() + HELD_FOR_MS });
        next();
      },
      () => next(),
    );
  };
}
