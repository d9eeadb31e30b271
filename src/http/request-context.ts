import type { NextFunction, Request, Response } from 'express';
import type { Principal } from '../auth/principals';
import type { Logger } from '../logging/logger';

export interface RequestLocals {
  requestId: string;
  log: Logger;
  startedAt: number;
  operation?: string;
  keyArn?: string;
  errorType?: string;
  /** Set by sigv4 once the signature verified. */
  principal?: Principal;
}

export function locals(res: Response): RequestLocals {
  return res.locals as RequestLocals;
}

/**
 * A request id on every response (x-amzn-RequestId, kms-protocol.md §1), a child logger, and one
 * summary log line when the response is finished: id, operation, key, status, error type, ms.
 */
export function requestContext(logger: Logger, newId: () => string) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const requestId = newId();
    Object.assign(res.locals, { requestId, log: logger.child({ requestId }), startedAt: performance.now() } satisfies RequestLocals);
    res.setHeader('x-amzn-RequestId', requestId);
    res.on('finish', () => {
      const l = locals(res);
      if (req.path === '/health') return;
      const line = {
        operation: l.operation,
        principal: l.principal?.principalArn,
        keyId: l.keyArn,
        status: res.statusCode,
        errorType: l.errorType,
        ms: Math.round((performance.now() - l.startedAt) * 100) / 100,
      };
      if (res.statusCode >= 500) l.log.error('request', line);
      else l.log.info('request', line);
    });
    next();
  };
}
