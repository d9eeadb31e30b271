import express from 'express';
import type { GatewayDeps } from '../operations/context';
import { sigv4 } from './sigv4';
import { stsDispatch } from './sts-dispatch';
import { stsErrorHandler } from './sts-error-handler';

/**
 * The `POST /` handlers for STS requests: a form body (`application/x-www-form-urlencoded`, what
 * botocore, the AWS CLI and the JS SDK v3 send for STS's query protocol) without X-Amz-Target. Any
 * other request goes on to the KMS route unchanged (`next('route')`), so KMS requests meet exactly
 * the checks they met before. Same body limit and SigV4 checks as KMS, but the credential must be
 * scoped to service `sts` in a served region; same rate limiter (passed in, shared with KMS); audited
 * by audited-answer.ts like every request. Errors are answered in STS's XML by the route's own
 * handler, last in the list.
 */
export function stsRoute(deps: GatewayDeps, limit: express.RequestHandler): Array<express.RequestHandler | express.ErrorRequestHandler> {
  return [
    onlySts,
    express.raw({ type: () => true, limit: deps.config.maxBodyBytes }),
    sigv4({ principals: deps.principals, regions: deps.config.regions, clockSkewSeconds: deps.config.clockSkewSeconds, now: () => new Date(), service: 'sts' }),
    limit,
    stsDispatch(),
    stsErrorHandler,
  ];
}

const onlySts: express.RequestHandler = (req, _res, next) => (isStsRequest(req) ? next() : next('route'));

/** Decided from headers only, before any byte of the body is read. */
function isStsRequest(req: express.Request): boolean {
  const mediaType = (req.get('content-type') ?? '').split(';')[0].trim().toLowerCase();
  return mediaType === 'application/x-www-form-urlencoded' && req.get('x-amz-target') === undefined;
}
