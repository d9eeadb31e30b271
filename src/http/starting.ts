import crypto from 'node:crypto';
import express from 'express';
import { DependencyTimeoutException } from '../errors/kms-errors';
import type { Logger } from '../logging/logger';
import { kmsErrorHandler } from './kms-error-handler';
import { liveness, type ProbeBody } from './probes';
import type { RequestLocals } from './request-context';

/**
 * What the port answers while main opens the token, reconciles the store and applies the seed file
 * (the process listens first, so an orchestrator can tell a slow start from a dead one):
 * /health 200 (the process answers), /ready 503 "starting", /metrics 503, and every KMS request DependencyTimeoutException
 * — a 5xx that every operation may return and that the AWS SDKs retry with backoff. Nothing is
 * authenticated, audited or counted yet: the credentials, the audit trail and the metrics are
 * opened by the start-up this stands in for.
 */
export function startingApp(logger: Logger, newRequestId: () => string = crypto.randomUUID): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use((_req, res, next) => {
    const requestId = newRequestId();
    Object.assign(res.locals, { requestId, log: logger.child({ requestId }), startedAt: performance.now() } satisfies RequestLocals);
    res.setHeader('x-amzn-RequestId', requestId);
    res.setHeader('Retry-After', '1');
    next();
  });
  const starting: ProbeBody = {
    status: 'starting',
    checks: { startup: { ok: false, detail: 'opening the HSM token and reconciling the key store' } },
    reasons: ['startup: opening the HSM token and reconciling the key store'],
  };
  app.get('/health', (_req, res) => void res.status(200).json(liveness('starting')));
  app.get('/ready', (_req, res) => void res.status(503).json(starting));
  app.get('/metrics', (_req, res) => void res.status(503).type('text/plain').send('starting\n'));
  app.use((_req, _res, next) => next(DependencyTimeoutException.starting()));
  app.use(kmsErrorHandler);
  return app;
}
