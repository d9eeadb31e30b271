import type { NextFunction, Request, Response } from 'express';
import type { Principal } from '../auth/principals';
import type { Logger } from '../logging/logger';
import type { GatewayMetrics } from '../metrics/gateway-metrics';
import { registry } from '../operations/registry';

export interface RequestLocals {
  requestId: string;
  log: Logger;
  startedAt: number;
  operation?: string;
  keyArn?: string;
  errorType?: string;
  /** Set by sigv4 once the signature verified. */
  principal?: Principal;
  /** The region of the verified credential scope (one of QKMS_REGIONS). */
  region?: string;
  /** A probe or scrape (/health, /ready, /metrics): not a KMS request, so neither audited nor counted. */
  isProbe?: boolean;
}

export function locals(res: Response): RequestLocals {
  return res.locals as RequestLocals;
}

/**
 * A request id on every response (x-amzn-RequestId, kms-protocol.md §1), a child logger made when
 * first used, and when
 * the response is finished one summary log line (id, operation, key, status, error type, ms) and
 * the request metrics — for every request, allowed or denied, never with its body. The audit
 * record is written before the answer leaves (audited-answer.ts).
 */
export function requestContext(logger: Logger, metrics: GatewayMetrics, newId: () => string) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const requestId = newId();
    Object.assign(res.locals, { requestId, startedAt: performance.now() } satisfies Omit<RequestLocals, 'log'>);
    // Made on first use: most requests log only the summary line below, which needs no child.
    let child: Logger | undefined;
    Object.defineProperty(res.locals, 'log', { get: () => (child ??= logger.child({ requestId })), configurable: true });
    res.setHeader('x-amzn-RequestId', requestId);
    // 'close' fires for every request, also when the client went away before the answer
    // ('finish' would not), so aborted requests are counted too.
    res.once('close', () => {
      const l = locals(res);
      if (l.isProbe) return; // an orchestrator polls these every few seconds
      if (!res.writableFinished) l.errorType ??= 'ClientClosedRequest';
      const seconds = (performance.now() - l.startedAt) / 1000;
      metrics.request(operationLabel(req, l), l.errorType ?? (res.statusCode < 400 ? 'success' : `HTTP${res.statusCode}`), seconds);
      const line = {
        requestId,
        operation: l.operation,
        principal: l.principal?.principalArn,
        keyId: l.keyArn,
        status: res.statusCode,
        errorType: l.errorType,
        ms: Math.round(seconds * 100000) / 100,
      };
      if (res.statusCode >= 500) logger.error('request', line);
      else logger.info('request', line);
    });
    next();
  };
}

/**
 * The operation for the metrics: the dispatched one, or for a request refused before dispatch
 * (signature, throttling) the X-Amz-Target's when it names a known operation. Anything else is
 * "unknown", so a client cannot mint label values.
 */
function operationLabel(req: Request, l: RequestLocals): string {
  if (l.operation) return l.operation;
  const name = /^TrentService\.([A-Za-z]+)$/.exec(req.get('x-amz-target') ?? '')?.[1];
  return name && registry.has(name) ? name : 'unknown';
}
