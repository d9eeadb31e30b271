import assert from 'node:assert/strict';
import type { NextFunction, Request, Response } from 'express';
import { ThrottlingException } from '../../../src/errors/kms-errors';
import { rateLimit } from '../../../src/http/rate-limit';
import { LocalTokenPool, type TokenPool } from '../../../src/store/token-pool';

/** One clock for every replica of a test, advanced by hand. */
class Clock {
  t = 0;
  now = () => this.t;
}

/** A pool every replica shares (as the store's is), with an optional round-trip delay. */
class SharedPool implements TokenPool {
  readonly isShared = true;
  calls = 0;
  private readonly inner: LocalTokenPool;
  constructor(clock: Clock) {
    this.inner = new LocalTokenPool(clock.now);
  }
  take(principal: string, rate: number, capacity: number, want: number): Promise<number> {
    this.calls++;
    return this.inner.take(principal, rate, capacity, want);
  }
}

/** Runs one request through a limiter: true when let through, false when throttled. */
function attempt(limiter: ReturnType<typeof rateLimit>, accessKeyId = 'AKIAALICE', rateLimitPerSecond?: number): Promise<boolean> {
  const res = { locals: { principal: { accessKeyId, principalArn: 'arn:aws:iam::1:user/a', rateLimitPerSecond } } } as unknown as Response;
  return new Promise((resolve, reject) => {
    const next: NextFunction = (err?: unknown) => (err === undefined ? resolve(true) : err instanceof ThrottlingException ? resolve(false) : reject(err));
    limiter({} as Request, res, next);
  });
}

describe('Rate limits', () => {
  it('hold for the whole deployment when the replicas share the pool: within ±20 % of the rate, with few store round trips', async () => {
    const clock = new Clock();
    const pool = new SharedPool(clock);
    const rate = 100;
    const replicas = [rateLimit(rate, pool, clock.now), rateLimit(rate, pool, clock.now), rateLimit(rate, pool, clock.now)];
    let granted = 0;
    let sent = 0;
    // 10 s of 1,000 requests per second, round-robin over three replicas.
    for (let ms = 0; ms < 10_000; ms++) {
      clock.t = ms;
      if (await attempt(replicas[sent++ % 3])) granted++;
    }
    const expected = rate * 10 + rate; // the sustained rate, plus the bucket's one second of burst
    assert.ok(Math.abs(granted - expected) <= 0.2 * rate * 10, `granted ${granted}, expected about ${expected}`);
    assert.ok(pool.calls < sent / 2, `${pool.calls} store round trips for ${sent} requests`);
  });

  it('on one replica (all traffic on one connection) the deployment rate still holds, not a third of it', async () => {
    const clock = new Clock();
    const pool = new SharedPool(clock);
    const only = rateLimit(30, pool, clock.now);
    let granted = 0;
    for (let ms = 0; ms < 5000; ms += 2) {
      clock.t = ms;
      if (await attempt(only)) granted++;
    }
    assert.ok(granted >= 30 * 5 * 0.8 && granted <= 30 * 6 * 1.2, `granted ${granted}`);
  });

  it('a local pool keeps the single-process behaviour: a burst of one second, then the rate; 0 means unlimited; principals apart', async () => {
    const clock = new Clock();
    const limiter = rateLimit(5, new LocalTokenPool(clock.now), clock.now);
    const burst = await Promise.all(Array.from({ length: 8 }, () => attempt(limiter)));
    assert.deepEqual(burst, [true, true, true, true, true, false, false, false]);
    assert.equal(await attempt(limiter, 'AKIABOB'), true, 'another principal has its own bucket');
    assert.equal(await attempt(limiter, 'AKIAFAST', 0), true);
    clock.t = 1000;
    assert.deepEqual(await Promise.all(Array.from({ length: 6 }, () => attempt(limiter))), [true, true, true, true, true, false]);
  });

  it('lets requests through when the shared pool fails (its store is down): throttling adds no outage of its own', async () => {
    const failing: TokenPool = { isShared: true, take: () => Promise.reject(new Error('connection refused')) };
    assert.equal(await attempt(rateLimit(5, failing)), true);
  });

  it('keeps what concurrent takes of one principal bring, instead of the last one overwriting the others', async () => {
    const clock = new Clock();
    const pool = new SharedPool(clock);
    const replica = rateLimit(100, pool, clock.now);
    assert.deepEqual(await Promise.all(Array.from({ length: 8 }, () => attempt(replica))), Array(8).fill(true));
    const before = pool.calls; // 8 takes of 5 tokens: 32 held
    for (let i = 0; i < 32; i++) assert.equal(await attempt(replica), true);
    assert.equal(pool.calls, before, 'the 32 held tokens served 32 requests without asking the pool');
  });

  it('tokens a replica took but did not use lapse after a second instead of saving up a burst', async () => {
    const clock = new Clock();
    const pool = new SharedPool(clock);
    const a = rateLimit(100, pool, clock.now);
    assert.equal(await attempt(a), true); // takes 5, uses 1
    clock.t = 5000;
    const before = pool.calls;
    assert.equal(await attempt(a), true);
    assert.equal(pool.calls, before + 1, 'the four held tokens had lapsed: the pool was asked again');
  });
});
