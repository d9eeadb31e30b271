import fs from 'node:fs';
import { ConfigError, DEVELOPMENT_CREDENTIAL, loadConfig, type Config } from '../config/load-config';
import { createLogger, type Logger } from '../logging/logger';
import { HttpCaller, type Credentials } from './http-caller';
import type { KmsCaller } from './kms-caller';
import { LocalCaller } from './local-caller';

/** Exit codes of every command (docs/cli.md). */
export const EXIT = { ok: 0, failed: 1, usage: 2, unavailable: 3 } as const;

/** An error meant for the operator: its message is printed as is, without a stack. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export interface GlobalOptions {
  endpoint?: string;
  region?: string;
  accessKeyId?: string;
  secretAccessKeyFile?: string;
  dataDir?: string;
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

  get isJson(): boolean {
    return this.options().json === true;
  }

  /** The result on stdout: JSON with --json, else the text form. */
  result(value: unknown, text: () => string): void {
    process.stdout.write(this.isJson ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`);
  }

  progress(message: string): void {
    process.stderr.write(`${message}\n`);
  }

  /** The gateway's configuration (QKMS_* variables; --data-dir overrides QKMS_DATA_DIR). */
  config(): Config {
    const dataDir = this.options().dataDir;
    try {
      return loadConfig({ ...this.env, ...(dataDir && { QKMS_DATA_DIR: dataDir }) });
    } catch (err) {
      if (err instanceof ConfigError) throw new CliError(err.message, EXIT.usage);
      throw err;
    }
  }

  /** Logs go to stderr, errors only (a direct-mode command is not a server): stdout carries results. */
  logger(): Logger {
    return createLogger({ level: 'error', stream: process.stderr });
  }

  get endpoint(): string | undefined {
    return this.options().endpoint;
  }

  /** KMS over HTTP with --endpoint, else in this process on the data dir (taking its lock). */
  async kms(): Promise<KmsCaller> {
    const endpoint = this.endpoint;
    if (endpoint) return new HttpCaller(checkedUrl(endpoint), this.region(), this.credentials());
    const config = this.config();
    try {
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

  region(): string {
    return this.options().region ?? this.env.QKMS_REGION ?? 'us-east-1';
  }

  /**
   * --access-key-id / --secret-access-key-file, else QKMS_ACCESS_KEY_ID / QKMS_SECRET_ACCESS_KEY,
   * else the public development credential a loopback gateway accepts. The secret is never taken
   * as a flag value: it would show in `ps` and shell history.
   */
  credentials(): Credentials {
    const o = this.options();
    const accessKeyId = o.accessKeyId ?? this.env.QKMS_ACCESS_KEY_ID;
    let secretAccessKey = this.env.QKMS_SECRET_ACCESS_KEY;
    if (o.secretAccessKeyFile) {
      try {
        secretAccessKey = fs.readFileSync(o.secretAccessKeyFile, 'utf8').trim();
      } catch (err) {
        throw new CliError(`cannot read --secret-access-key-file: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`, EXIT.usage);
      }
    }
    if (!accessKeyId && !secretAccessKey) return { ...DEVELOPMENT_CREDENTIAL };
    if (!accessKeyId || !secretAccessKey) throw new CliError('give both an access key id and its secret (QKMS_ACCESS_KEY_ID and QKMS_SECRET_ACCESS_KEY, or the flags)', EXIT.usage);
    return { accessKeyId, secretAccessKey };
  }
}

function checkedUrl(endpoint: string): string {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new CliError(`--endpoint must be a URL such as http://127.0.0.1:8080, not '${endpoint}'`, EXIT.usage);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError('--endpoint must be an http:// or https:// URL', EXIT.usage);
  return url.origin;
}

/** An error's message with its causes (HsmError keeps the PKCS#11 detail there). Never a stack. */
export function describe(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err; e instanceof Error && parts.length < 4; e = e.cause) parts.push(e.message);
  return parts.length > 0 ? parts.join(': ') : String(err);
}
