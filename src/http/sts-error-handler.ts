import type { NextFunction, Request, Response } from 'express';
import { locals } from './request-context';
import { toStsError } from './sts-errors';
import { sendXml, STS_NAMESPACE, xmlText } from './sts-xml';

/**
 * The STS route's one place where an error becomes a response: AWS's query-protocol error document
 * (<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>). A 5xx's
 * cause goes to the log with the request id, never to the client (as kms-error-handler.ts).
 */
export function stsErrorHandler(err: unknown, _req: Request, res: Response, _next: NextFunction): void {
  const l = locals(res);
  const error = toStsError(err);
  l.errorType = error.code;
  if (error.status >= 500) {
    const cause = error.cause ?? err;
    l.log.error('request failed', { errorType: error.code, cause: cause instanceof Error ? { name: cause.name, message: cause.message, stack: cause.stack } : String(cause) });
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendXml(
    res,
    error.status,
    `<ErrorResponse xmlns="${STS_NAMESPACE}"><Error><Type>${error.type}</Type><Code>${error.code}</Code><Message>${xmlText(error.message)}</Message></Error><RequestId>${xmlText(l.requestId)}</RequestId></ErrorResponse>`,
  );
}
