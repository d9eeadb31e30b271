import crypto from 'node:crypto';
import type { Config } from '../config/load-config';
import { UnknownOperationException } from '../errors/kms-errors';
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
    let status = 200;
    let errorCode: string | null = null;
    try {
      const op = registry.get(operation);
      if (!op) throw UnknownOperationException.create();
      const log = this.logger.child({ requestId, operation });
      const output = await op.handle(validateInput(op.schema, JSON.parse(JSON.stringify(input))), { deps, requestId, principal, log, noteKey: (arn) => (keyArn = arn) });
      // Through JSON, as on the wire: Dates become epoch numbers exactly as dispatch sends them.
      return (output === undefined ? {} : JSON.parse(JSON.stringify(output))) as T;
    } catch (err) {
      // The gateway's own mapping: an HSM failure is KeyUnavailable/DependencyTimeout here too.
      const kmsError = toKmsError(err);
      status = kmsError.status;
      errorCode = kmsError.type;
      if (status >= 500) this.logger.error('operation failed', { operation, errorType: errorCode, cause: err instanceof Error ? err.message : String(err) });
      throw new KmsCallError(errorCode, kmsError.hasMessage ? kmsError.message : '', status);
    } finally {
      deps.audit.append({
        time: new Date().toISOString(),
        requestId,
        operation,
        principal: principal.principalArn,
        accessKeyId: principal.accessKeyId,
        sourceIp: 'local-cli',
        keyArn,
        status,
        errorCode,
      });
    }
  }

  async close(): Promise<void> {
    await this.gateway.close();
  }
}
