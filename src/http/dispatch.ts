import type { NextFunction, Request, Response } from 'express';
import { SerializationException, ThrottlingException, UnknownOperationException } from '../errors/kms-errors';
import { regionalDeps, type GatewayDeps } from '../operations/context';
import { registry } from '../operations/registry';
import { validateInput } from '../operations/validate-input';
import { parseKeyRef } from '../domain/key-ref';
import { TRACKED_OPERATIONS } from '../domain/key-usage';
import { locals } from './request-context';

export const JSON_CONTENT_TYPE = 'application/x-amz-json-1.1';
const TARGET = /^TrentService\.([A-Za-z]+)$/;

/**
 * X-Amz-Target -> registry -> JSON.parse -> joi -> operation -> 200. Errors go to kms-error-handler.
 * Admission first: with QKMS_HSM_MAX_QUEUE Hsm calls pending (calls whose callers gave up at their
 * deadline count until the HSM layer is done with them), a request is refused at once with
 * ThrottlingException, which the SDKs retry with backoff, rather than queue behind work it would
 * wait longer for than a client does. Refused before it starts, a request is never left half-done;
 * calls of requests already admitted, and the gateway's own (the audit trail's MACs, scheduled
 * work), are never refused.
 */
export function dispatch(deps: GatewayDeps) {
  const byRegion = regionalDeps(deps);
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    try {
      if (deps.hsm.pendingCalls() >= deps.config.pkcs11.maxQueued) {
        throw new ThrottlingException('The HSM is busy: too many requests are waiting for it. Retry with backoff.');
      }
      const l = locals(res);
      // The signed scope's region, one sigv4 accepted: keys and ARNs are that region's.
      const regional = byRegion.get(l.region!) ?? deps;
      const name = TARGET.exec(req.get('x-amz-target') ?? '')?.[1];
      const operation = name ? registry.get(name) : undefined;
      if (!name || !operation) throw UnknownOperationException.create();
      l.operation = name;
      const input = validateInput(operation.schema, parseBody(req.body));
      const used: string[] = [];
      const output = await operation.handle(input, {
        deps: regional,
        requestId: l.requestId,
        principal: l.principal!,
        log: l.log.child({ operation: name }),
        noteKey: (keyArn) => {
          l.keyArn = keyArn;
          used.push(keyArn);
        },
      });
      // ReEncrypt uses two keys; a DryRun never gets here (it answers DryRunOperationException).
      if (deps.usage && TRACKED_OPERATIONS.has(name)) {
        for (const arn of used) {
          const ref = parseKeyRef(arn);
          if (ref.kind === 'keyArn') deps.usage.note(ref.keyId, regional.scope.region, name, l.requestId);
        }
      }
      // Operations without output answer 200 with an empty body (kms-protocol.md §1).
      sendJson(res, 200, output === undefined ? '' : JSON.stringify(output));
    } catch (err) {
      next(err);
    }
  };
}

/** Exactly `application/x-amz-json-1.1`: Express would append a charset to a string body. */
export function sendJson(res: Response, status: number, body: string): void {
  res.status(status).setHeader('Content-Type', JSON_CONTENT_TYPE);
  res.end(Buffer.from(body, 'utf8'));
}

/** The raw bytes as a JSON object; an empty body is `{}` (Smithy awsJson1_1). */
function parseBody(body: unknown): unknown {
  const raw = Buffer.isBuffer(body) ? body : Buffer.alloc(0);
  if (raw.length === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new SerializationException('The request body is not valid JSON.');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new SerializationException('The request body must be a JSON object.');
  }
  return parsed;
}
