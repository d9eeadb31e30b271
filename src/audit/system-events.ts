import crypto from 'node:crypto';
import { keyArn, type ArnScope } from '../domain/arn';
import type { KmsError } from '../errors/kms-errors';
import type { AuditTrail } from './audit-trail';

/**
 * What QKMS does on its own — the seed file's CreateKey/CreateAlias, the scheduler's DeleteKey and
 * RotateKey (AWS CloudTrail's names) — recorded like a request: no principal, `sourceIp` naming the
 * source, and the error when the event failed: a KmsError with its own status (the seed file's
 * changes refused as a client's would be), another code as 500. Resolves once the record is
 * durable, like a request's.
 */
export function recordSystemEvent(
  deps: { audit: AuditTrail; scope: ArnScope; clock: () => Date },
  source: 'seed-file' | 'scheduler',
  operation: string,
  keyId: string,
  error: string | KmsError | null = null,
): Promise<void> {
  const errorCode = typeof error === 'string' || error === null ? error : error.type;
  const status = error === null ? 200 : typeof error === 'string' ? 500 : error.status;
  return deps.audit.record({
    time: deps.clock().toISOString(),
    requestId: crypto.randomUUID(),
    operation,
    principal: null,
    accessKeyId: null,
    sourceIp: source,
    keyArn: keyArn(deps.scope, keyId),
    status,
    errorCode,
  });
}
