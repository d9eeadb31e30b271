import { ConfigError, loadConfig, type Config } from '../config/load-config';
import { createLogger, type Logger } from '../logging/logger';
import { CliError, EXIT } from './cli-errors';
import { resolveSigner } from './credentials';
import { resolveEndpoint, type Endpoint } from './endpoint';
import { HttpCaller } from './http-caller';
import type { KmsCaller } from './kms-caller';

export { CliError, EXIT } from './cli-errors';

export interface GlobalOptions {
  endpoint?: string;
  direct?: boolean;
  region?: string;
  accessKeyId?: string;
  secretAccessKeyFile?: string;
  devCredential?: boolean;
  dataDir?: string;
  output: 'table' | 'json';
  json?: boolean;
}

type Env = Record<string, string | undefined>;

/**
 * What every command needs: the mode (an --endpoint, or direct on the HSM and store with the
 * gateway's QKMS_* configuration), output that keeps stdout machine-readable (results only;
 * progress and logs on stderr), and the environment, read only by the entry point.
 */
export class Cli {
  constructor(
    private readonly env: Env,
    readonly options: () => GlobalOptions,
  ) {}

  /** --output json, or its older spelling --json. */
  get isJson(): boolean {
    return this.options().json === true || this.options().output === 'json';
  }

  /** The result on stdout: JSON with --output json, else the text form (tables for lists). */
  result(value: unknown, text: () => string): void {
    process.stdout.write(this.isJson ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`);
  }

  progress(message: string): void {
    process.stderr.write(`${message}\n`);
  }

  /**
   * The gateway's configuration (QKMS_* variables; --data-dir overrides QKMS_DATA_DIR).
   * QKMS_ENDPOINT is the CLI's own: the gateway's strict check would refuse it as a typo.
   */
  config(): Config {
    const dataDir = this.options().dataDir;
    const { QKMS_ENDPOINT: _endpoint, ...env } = this.env;
    try {
      return loadConfig({ ...env, ...(dataDir && { QKMS_DATA_DIR: dataDir }) });
    } catch (err) {
      if (err instanceof ConfigError) throw new CliError(err.message, EXIT.usage);
      throw err;
    }
  }

  /** Logs go to stderr, errors only (a direct-mode command is not a server): stdout carries results. */
  logger(): Logger {
    return createLogger({ level: 'error', stream: process.stderr });
  }

  /** --endpoint, QKMS_ENDPOINT, AWS_ENDPOINT_URL_KMS, AWS_ENDPOINT_URL; none (or --direct): direct mode. */
  get endpoint(): Endpoint | undefined {
    const o = this.options();
    if (o.direct) {
      if (o.endpoint !== undefined) throw new CliError('--direct and --endpoint exclude each other', EXIT.usage);
      return undefined;
    }
    return resolveEndpoint(o.endpoint, this.env);
  }

  /** Commands that only work on the data dir refuse --endpoint, and ignore the endpoint variables. */
  get hasEndpointFlag(): boolean {
    return this.options().endpoint !== undefined;
  }

  /** KMS over HTTP to the endpoint, else in this process on the data dir (taking its lock). */
  async kms(): Promise<KmsCaller> {
    const endpoint = this.endpoint;
    if (endpoint) {
      const o = this.options();
      const signer = await resolveSigner({ ...o, isDevelopmentCredential: o.devCredential }, this.env, endpoint, (m) => this.progress(m));
      return new HttpCaller(endpoint, signer);
    }
    const config = this.config();
    try {
      // Loaded here, not at the top: the gateway's modules are most of qkms's start-up time, and
      // remote-mode commands, --help and --version never need them. require, not import(): run
      // from source (bin/qkms.js with tsx's require hook), an import() goes to Node's ESM loader,
      // which does not find the extensionless .ts module.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { LocalCaller } = require('./local-caller') as typeof import('./local-caller');
      return await LocalCaller.open(config, this.logger());
    } catch (err) {
      throw new CliError(`cannot open the HSM and key store of ${config.dataDir}: ${describe(err)}`, EXIT.unavailable);
    }
  }

  /** Runs body with a caller, closed afterwards whatever happens (direct mode: the last audit batch, the lock). */
  async withKms<T>(body: (kms: KmsCaller) => Promise<T>): Promise<T> {
    const kms = await this.kms();
    try {
      return await body(kms);
    } finally {
      await kms.close();
    }
  }
}

/** An error's message with its causes (HsmError keeps the PKCS#11 detail there). Never a stack. */
export function describe(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err; e instanceof Error && parts.length < 4; e = e.cause) parts.push(e.message);
  return parts.length > 0 ? parts.join(': ') : String(err);
}
