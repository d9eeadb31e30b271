import type { NextFunction, Request, Response } from 'express';
import { HsmError } from '../hsm/hsm-error';
import {
  DependencyTimeoutException,
  KeyUnavailableException,
  KmsError,
  KMSInternalException,
  SerializationException,
  UnknownOperationException,
  UnsupportedOperationException,
  ValidationException,
} from '../errors/kms-errors';
import { sendJson } from './dispatch';
import { locals } from './request-context';

/**
 * The ONLY place an error becomes a response: status + {"__type","message"} (kms-protocol.md §2).
 * HsmErrors that reach here map by kind; anything unknown is a 500 KMSInternalException whose
 * cause goes to the log with the request id, never to the client.
 */
export function kmsErrorHandler(err: unknown, _req: Request, res: Response, _next: NextFunction): void {
  const l = locals(res);
  const kmsError = toKmsError(err);
  l.errorType = kmsError.type;
  if (kmsError.status >= 500) {
    const cause = kmsError.cause ?? err;
    l.log.error('request failed', {
      errorType: kmsError.type,
      cause: cause instanceof Error ? { name: cause.name, message: cause.message, stack: cause.stack, causedBy: causeChain(cause) } : String(cause),
    });
  }
  res.setHeader('x-amzn-ErrorType', kmsError.type);
  sendJson(res, kmsError.status, JSON.stringify(kmsError.toBody()));
}

export function toKmsError(err: unknown): KmsError {
  if (err instanceof KmsError) return err;
  if (err instanceof HsmError) return fromHsmError(err);
  const e = err as { type?: string; status?: number };
  // body-parser errors: size limit, unreadable or aborted body.
  if (e?.type === 'entity.too.large') return new ValidationException('The request body exceeds the size limit.');
  if (e?.type === 'encoding.unsupported' || e?.type === 'request.aborted' || e?.status === 400) {
    return new SerializationException('The request body could not be read.');
  }
  return KMSInternalException.create(err);
}

function fromHsmError(err: HsmError): KmsError {
  switch (err.kind) {
    case 'timeout':
      return DependencyTimeoutException.create(err);
    case 'key':
      return new KeyUnavailableException('The key material is not available in the HSM.', { cause: err });
    case 'device':
    case 'session':
    case 'auth':
      return KeyUnavailableException.tokenDown(err);
    case 'unsupported':
      return new UnsupportedOperationException(`This HSM cannot do it: ${err.fn} answered ${err.ckr ?? 'that the function is not supported'}.`, { cause: err });
    default:
      return KMSInternalException.create(err);
  }
}

/** The messages of an error's causes, innermost last (e.g. why the HSM refused). */
function causeChain(err: Error): string[] {
  const messages: string[] = [];
  for (let c = err.cause; c instanceof Error && messages.length < 5; c = c.cause) messages.push(c.message);
  return messages;
}

/** Anything that is not POST / (or a health probe) is not a KMS operation. */
export function notFound(_req: Request, _res: Response, next: NextFunction): void {
  next(UnknownOperationException.create());
}
