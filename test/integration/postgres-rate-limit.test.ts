import assert from 'node:assert/strict';
import type { NextFunction, Request, Response } from 'express';
import { ThrottlingException } from '../../src/errors/kms-errors';
import { rateLimit } from '../../src/http/rate-limit';
import { PostgresKeyRepository } from '../../src/store/postgres-key-repository';
import { sharedPostgres, skipWithoutPostgres } from '../support/postgres';

function attempt(limiter: ReturnType<typeof rateLimit>, accessKeyId: string): Promise<boolean> {
  const res = { locals: { principal: { accessKeyId, principalArn: 'arn:aws:iam::1:user/a' } } } as unknown as Response;
  return new Promise((resolve, reject) => {
    const next: NextFunction = (err?: unknown) => (err === undefined ? resolve(true) : err instanceof ThrottlingException ? resolve(false) : reject(err));
    limiter({} as Request, res, next);
  });
}

/**
 * Three replicas, each with its own pool of connections to one database, limiting one principal:
 * the rate holds for the deployment (within ±20 %), not three times over.
 */
describe('Rate limits shared through PostgreSQL', function () {
  this.timeout(60_000);
  let replicas: PostgresKeyRepository[] = [];
  before(async function () {
    skipWithoutPostgres(this);
    const url = await (await sharedPostgres()).createDatabase('ratelimit');
    replicas = [await PostgresKeyRepository.open(url), await PostgresKeyRepository.open(url), await PostgresKeyRepository.open(url)];
  });
  after(async () => {
    for (const r of replicas) await r.close();
  });

  it('a principal gets its rate across three replicas, round-robin, and one replica alone gets the same', async () => {
    const rate = 40;
    const seconds = 3;
    for (const [name, limiters] of [
      ['round-robin', replicas.map((r) => rateLimit(rate, r.rateBuckets()))],
      ['one replica', [rateLimit(rate, replicas[0].rateBuckets())]],
    ] as const) {
      const principal = `AKIA${name.replace(/\W/g, '').toUpperCase()}`;
      let granted = 0;
      let sent = 0;
      const end = performance.now() + seconds * 1000;
      // About four times the rate, eight callers at a time.
      while (performance.now() < end) {
        const batch = await Promise.all(Array.from({ length: 8 }, () => attempt(limiters[sent++ % limiters.length], principal)));
        granted += batch.filter(Boolean).length;
        await new Promise((r) => setTimeout(r, 50));
      }
      const expected = rate * seconds + rate; // sustained, plus the bucket's one second of burst
      assert.ok(Math.abs(granted - expected) <= 0.2 * expected, `${name}: ${granted} let through of ${sent}, expected about ${expected}`);
    }
  });
});
