import fs from 'node:fs';
import Joi from 'joi';
import { parsePolicy, type PolicyDocument } from '../domain/policy';
import type { Logger } from '../logging/logger';

/** Who signed a request: the access key's principal, and its identity policy when it has one. */
export interface Principal {
  accessKeyId: string;
  principalArn: string;
  /** Identity policy, parsed once when the credentials are loaded; evaluated with key policies. */
  policy?: PolicyDocument;
  /** Overrides QKMS_RATE_LIMIT_PER_SECOND for this principal; 0 = unlimited. */
  rateLimitPerSecond?: number;
}

interface Credential extends Principal {
  secretAccessKey: string;
}

const fileSchema = Joi.object({
  principals: Joi.array()
    .items(
      Joi.object({
        accessKeyId: Joi.string().pattern(/^[A-Z0-9]{16,128}$/).required(),
        secretAccessKey: Joi.string().min(16).max(128).required(),
        principalArn: Joi.string().pattern(/^arn:aws[a-z-]*:(iam|sts)::\d{12}:\S+$/).required(),
        policy: Joi.object(),
        rateLimitPerSecond: Joi.number().min(0).max(1000000),
      }),
    )
    .unique('accessKeyId')
    .required(),
});

const RELOAD_CHECK_MS = 1000;

/**
 * Access keys the gateway accepts: the admin credential (QKMS_ACCESS_KEY_ID / _SECRET_ACCESS_KEY,
 * principal `arn:aws:iam::<account>:root`) and those of QKMS_CREDENTIALS_FILE, which is re-read
 * when its modification time or size changes (checked at most once a second), so keys are added
 * and revoked without a restart. A file that fails to parse is reported and the previous set kept.
 * It is also checked every second without requests: replicas that share the file (or copies of it)
 * each load every version that stays a second, busy or idle, so a later broken version leaves them
 * all on the same principals.
 */
export class PrincipalStore {
  private fromFile = new Map<string, Credential>();
  private fileStamp = '';
  private checkedAt = 0;
  private readonly timer?: NodeJS.Timeout;

  constructor(
    private readonly admin: Credential,
    private readonly file: string | undefined,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.reloadIfChanged(true);
    if (file) {
      // Unthrottled: a lookup just before it must not push the next check a second further away.
      this.timer = setInterval(() => this.reloadIfChanged(false, true), RELOAD_CHECK_MS);
      this.timer.unref();
    }
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** The secret and principal of an access key id, or undefined for an unknown key. */
  lookup(accessKeyId: string): Credential | undefined {
    this.reloadIfChanged(false);
    return accessKeyId === this.admin.accessKeyId ? this.admin : this.fromFile.get(accessKeyId);
  }

  private reloadIfChanged(isStartup: boolean, isDue = isStartup): void {
    if (!this.file || (!isDue && this.now() - this.checkedAt < RELOAD_CHECK_MS)) return;
    this.checkedAt = this.now();
    let stamp: string;
    try {
      const st = fs.statSync(this.file);
      stamp = `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch (err) {
      if (isStartup) throw new Error(`QKMS_CREDENTIALS_FILE ${this.file}: ${(err as Error).message}`);
      this.logger.error('credentials file unreadable; keeping the previous principals', { file: this.file });
      return;
    }
    if (stamp === this.fileStamp) return;
    try {
      this.fromFile = parse(fs.readFileSync(this.file, 'utf8'));
      this.fileStamp = stamp;
      this.logger.info('credentials file loaded', { file: this.file, principals: [...this.fromFile.values()].map((p) => p.principalArn) });
    } catch (err) {
      if (isStartup) throw new Error(`QKMS_CREDENTIALS_FILE ${this.file}: ${(err as Error).message}`);
      this.logger.error('credentials file invalid; keeping the previous principals', { file: this.file, problem: (err as Error).message });
    }
  }
}

function parse(text: string): Map<string, Credential> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // Node's JSON.parse message quotes the text around the error: it could be part of a secret.
    throw new Error('not valid JSON');
  }
  const { error, value } = fileSchema.validate(json, { abortEarly: false });
  // Joi's messages name the path but not the secret value.
  if (error) throw new Error(error.details.map((d) => d.message).join('; '));
  for (const c of value.principals as Credential[]) {
    if (c.policy !== undefined) c.policy = parsePolicy(JSON.stringify(c.policy), { requirePrincipal: false });
  }
  return new Map((value.principals as Credential[]).map((c) => [c.accessKeyId, c]));
}
