import crypto from 'node:crypto';
import path from 'node:path';
import express from 'express';
import { auditedAnswer } from './http/audited-answer';
import { consoleRoutes } from './http/console/console-routes';
import { operationForms } from './http/console/operation-forms';
import { dispatch } from './http/dispatch';
import { kmsErrorHandler, notFound } from './http/kms-error-handler';
import { probes } from './http/probes';
import { locals, requestContext } from './http/request-context';
import { rateLimit } from './http/rate-limit';
import { sigv4 } from './http/sigv4';
import { stsRoute } from './http/sts-route';
import { registry } from './operations/registry';
import type { GatewayDeps } from './operations/context';

/**
 * Where `npm run build` writes the console bundle: <repo>/dist/console, found from both
 * src/ (tsx, tests) and dist/ (npm start, the image), which sit at the same depth.
 */
const CONSOLE_ASSETS_DIR = path.resolve(__dirname, '..', 'dist', 'console');

/** The probe routes below: all that the probe listener (QKMS_PROBE_PORT, server.ts) passes on. */
export const PROBE_PATHS: ReadonlySet<string> = new Set(['/health', '/ready', '/metrics']);

/** Builds the Express app from injected parts; never listens (tests drive it on port 0). */
export function createApp(deps: GatewayDeps, options: { newRequestId?: () => string; consoleAssetsDir?: string } = {}): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use('/console', consoleRoutes({ assetsDir: options.consoleAssetsDir ?? CONSOLE_ASSETS_DIR, region: deps.config.region, forms: operationForms(registry) }));
  app.use(requestContext(deps.logger, deps.metrics, options.newRequestId ?? crypto.randomUUID));
  app.use(auditedAnswer(deps.audit));

  // Probes and the scrape: unauthenticated, not audited, not counted. Bind QKMS_HOST or firewall
  // the port accordingly (docs/operations.md).
  const probe = (handler: express.RequestHandler): express.RequestHandler => (req, res, next) => {
    locals(res).isProbe = true;
    return handler(req, res, next);
  };
  const { health, ready } = probes(deps);
  app.get('/health', probe(health));
  app.get('/ready', probe(ready));
  app.get(
    '/metrics',
    probe(async (_req, res) => {
      const { contentType, body } = await deps.metrics.render();
      res.status(200).setHeader('Content-Type', contentType);
      res.end(body);
    }),
  );

  // One limiter for both routes: an STS call spends the same per-principal budget as a KMS call.
  const limit = rateLimit(deps.config.rateLimitPerSecond, deps.rateBuckets);
  // STS's query protocol (a form body, no X-Amz-Target) for GetCallerIdentity; anything else goes on to KMS.
  app.post('/', ...stsRoute(deps, limit));
  // The exact bytes, whatever the Content-Type: SigV4 hashes them and we parse the JSON ourselves.
  app.post(
    '/',
    express.raw({ type: () => true, limit: deps.config.maxBodyBytes }),
    sigv4({ principals: deps.principals, regions: deps.config.regions, clockSkewSeconds: deps.config.clockSkewSeconds, now: () => new Date(), service: 'kms' }),
    limit,
    dispatch(deps),
  );
  app.use(notFound);
  app.use(kmsErrorHandler);
  return app;
}
