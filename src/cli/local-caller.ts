import crypto from 'node:crypto';
import type { Config } from '../config/load-config';
import { UnknownOperationException, type KmsError } from '../errors/kms-errors';
import { toKmsError } from '../http/kms-error-handler';
import { openGatewayOnDataDir, type Gateway } from '../gateway';
import type { Logger } from '../logging/logger';
import { registry } from '../operations/registry';
import { validateInput } from '../operations/validate-input';
import { KmsCallError, type KmsCaller } from './kms-caller';

/**
 * KMS operations in this process, straight on the HSM and the store, as the admin principal
 * (arn:aws:iam::<account>:root): the registry, joi validation, authorization, errors and the audit
 * record are the gateway's own, only the HTTP and SigV4 layers are skipped. It takes the
 * data dir's single-writer lock, so this refuses to run beside a gateway on the same dir.
 */
export class LocalCaller implements KmsCaller {
  private constructor(
    private readonly gateway: Gateway,
    private readonly logger: Logger,
  ) {}

  static async open(config: Config, logger: Logger): Promise<LocalCaller> {
    return new LocalCaller(await openGatewayOnDataDir(config, logger), logger);
  }

  async call<T = Record<string, any>>(operation: string, input: object): Promise<T> {
    const { deps } = this.gateway;
    const requestId = crypto.randomUUID();
    const principal = deps.principals.lookup(deps.config.adminCredential.accessKeyId)!;
    let keyArn: string | null = null;
    let outcome: { output: T } | { error: KmsError };
    try {
      const op = registry.get(operation);
      if (!op) throw UnknownOperationException.create();
      const log = this.logger.child({ requestId, operation });
      const output = await op.handle(validateInput(op.schema, JSON.parse(JSON.stringify(input))), { deps, requestId, principal, log, noteKey: (arn) => (keyArn = arn) });
      // Through JSON, as on the wire: Dates become epoch numbers exactly as dispatch sends them.
      outcome = { output: (output === undefined ? {} : JSON.parse(JSON.stringify(output))) as T };
    } catch (err) {
      // The gateway's own mapping: an HSM failure is KeyUnavailable/DependencyTimeout here too.
      outcome = { error: this.failed(operation, err) };
    }
    const error = 'error' in outcome ? outcome.error : undefined;
    // As over HTTP (http/audited-answer.ts): no result or client error without its durable audit
    // record; a server error already says nothing more.
    await deps.audit
      .record({
        time: new Date().toISOString(), requestId, operation, principal: principal.principalArn, accessKeyId: principal.accessKeyId,
        sourceIp: 'local-cli', keyArn, status: error?.status ?? 200, errorCode: error?.type ?? null,
      })
      .catch((err: unknown) => {
        if (!error || error.status < 500) throw this.callError(this.failed(operation, err));
      });
    if (error) throw this.callError(error);
    return (outcome as { output: T }).output;
  }

  private failed(operation: string, err: unknown): KmsError {
    const kmsError = toKmsError(err);
    if (kmsError.status >= 500) this.logger.error('operation failed', { operation, errorType: kmsError.type, cause: err instanceof Error ? err.message : String(err) });
    return kmsError;
  }

  private callError(e: KmsError): KmsCallError {
    return new KmsCallError(e.type, e.hasMessage ? e.message : '', e.status);
  }

  async close(): Promise<void> {
    await this.gateway.close();
  }
}
