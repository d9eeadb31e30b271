import crypto from 'node:crypto';
import express from 'express';
import { dispatch } from './http/dispatch';
import { kmsErrorHandler, notFound } from './http/kms-error-handler';
import { health, ready } from './http/probes';
import { requestContext } from './http/request-context';
import { rateLimit } from './http/rate-limit';
import { sigv4 } from './http/sigv4';
import type { GatewayDeps } from './operations/context';

/** Builds the Express app from injected parts; never listens (tests drive it on port 0). */
export function createApp(deps: GatewayDeps, options: { newRequestId?: () => string } = {}): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use(requestContext(deps.logger, deps.audit, deps.metrics, options.newRequestId ?? crypto.randomUUID));

  // Unauthenticated, like /health: bind QKMS_HOST or firewall the port accordingly (docs/operations.md).
  app.get('/health', health(deps));
  app.get('/ready', ready(deps));
  app.get('/metrics', async (_req, res) => {
    const { contentType, body } = await deps.metrics.render();
    res.status(200).setHeader('Content-Type', contentType);
    res.end(body);
  });

  // The exact bytes, whatever the Content-Type: SigV4 hashes them and we parse the JSON ourselves.
  app.post(
    '/',
    express.raw({ type: () => true, limit: deps.config.maxBodyBytes }),
    sigv4({ principals: deps.principals, region: deps.config.region, clockSkewSeconds: deps.config.clockSkewSeconds, now: () => new Date() }),
    rateLimit(deps.config.rateLimitPerSecond),
    dispatch(deps),
  );
  app.use(notFound);
  app.use(kmsErrorHandler);
  return app;
}
