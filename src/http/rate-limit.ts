import type { NextFunction, Request, Response } from 'express';
import { ThrottlingException } from '../errors/kms-errors';
import { LocalTokenPool, type TokenPool } from '../store/token-pool';
import { locals } from './request-context';

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
        // Several takes of one principal may be in flight at once: what each brings is added.
        const entry = held.get(id) ?? { tokens: 0, until: 0 };
        const t2 = now();
        if (entry.until <= t2) entry.tokens = 0;
        held.set(id, entry);
        if (got < 1) {
          entry.emptyUntil = t2 + (want / rate) * 1000;
          return next(throttled());
        }
        entry.tokens += got - 1;
        entry.until = t2 + HELD_FOR_MS;
        entry.emptyUntil = undefined;
        next();
      },
      () => next(),
    );
  };
}
