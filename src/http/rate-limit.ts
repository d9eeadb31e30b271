import type { NextFunction, Request, Response } from 'express';
import { ThrottlingException } from '../errors/kms-errors';
import { locals } from './request-context';

/**
 * Per-principal token buckets: `rate` requests per second sustained, bursts up to one second's
 * worth. A principal's own `rateLimitPerSecond` (credentials file) overrides the default; 0 means
 * unlimited. Over the limit: ThrottlingException, which the SDKs retry with backoff.
 */
export function rateLimit(defaultPerSecond: number, now: () => number = () => performance.now()) {
  const buckets = new Map<string, { tokens: number; at: number }>();
  return (_req: Request, res: Response, next: NextFunction): void => {
    const principal = locals(res).principal!;
    const rate = principal.rateLimitPerSecond ?? defaultPerSecond;
    if (rate <= 0) return next();
    const t = now();
    const capacity = Math.max(1, rate);
    const bucket = buckets.get(principal.accessKeyId) ?? { tokens: capacity, at: t };
    bucket.tokens = Math.min(capacity, bucket.tokens + ((t - bucket.at) / 1000) * rate);
    bucket.at = t;
    buckets.set(principal.accessKeyId, bucket);
    if (bucket.tokens < 1) {
      return next(new ThrottlingException('You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.'));
    }
    bucket.tokens -= 1;
    next();
  };
}
