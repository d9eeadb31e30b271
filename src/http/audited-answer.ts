import type { NextFunction, Request, Response } from 'express';
import type { AuditTrail } from '../audit/audit-trail';
import type { RequestFields } from '../audit/audit-record';
import { kmsErrorHandler } from './kms-error-handler';
import { locals } from './request-context';

/**
 * Every KMS answer, allowed or denied, waits until its audit record is durable (AuditLog.record):
 * `res.end` is held and called once the record's batch committed. When the record cannot be
 * written, a result or a client error is replaced by a 500 KMSInternalException, so nothing the
 * operation found out leaves unrecorded; an answer that is a server error already (the HSM is
 * down, which also stops the trail's signatures) is sent as it is: it says more and reveals
 * nothing. Fail-open answers anyway (AuditLog decides and logs). A request whose client went away
 * before any answer is recorded on 'close'. Probes and the scrape are neither held nor recorded.
 */
export function auditedAnswer(audit: AuditTrail) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const end = res.end;
    let isRecorded = false;
    const record = (hasAnswer: boolean): Promise<void> => {
      isRecorded = true;
      return audit.record(recordFields(req, res, hasAnswer));
    };
    res.end = function heldEnd(this: Response, ...args: unknown[]) {
      if (isRecorded || locals(res).isProbe) return end.apply(res, args as Parameters<Response['end']>);
      record(true).then(
        () => end.apply(res, args as Parameters<Response['end']>),
        (err: unknown) => (res.statusCode >= 500 ? end.apply(res, args as Parameters<Response['end']>) : answerUnrecorded(req, res, err)),
      );
      return res;
    } as Response['end'];
    res.once('close', () => {
      // AuditLog logs a failure; there is nobody left to answer.
      if (!isRecorded && !locals(res).isProbe) record(false).catch(() => undefined);
    });
    next();
  };
}

/** The KMS error instead of the held answer, through the one error handler (res.end passes now). */
function answerUnrecorded(req: Request, res: Response, err: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.removeHeader('Content-Length');
  kmsErrorHandler(err, req, res, () => undefined);
}

function recordFields(req: Request, res: Response, hasAnswer: boolean): RequestFields {
  const l = locals(res);
  return {
    time: new Date().toISOString(),
    requestId: l.requestId,
    operation: l.operation ?? null,
    principal: l.principal?.principalArn ?? null,
    accessKeyId: l.principal?.accessKeyId ?? null,
    sourceIp: req.socket.remoteAddress ?? null,
    keyArn: l.keyArn ?? null,
    status: res.statusCode,
    errorCode: l.errorType ?? (hasAnswer ? null : 'ClientClosedRequest'),
  };
}
