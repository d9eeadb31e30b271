import fs from 'node:fs';
import Joi from 'joi';
import { DEVELOPMENT_CREDENTIAL } from '../config/load-config';
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
 * QKMS_CREDENTIALS_FILE cannot be used: a configuration error (exit code 2 at start-up). Each
 * problem names the JSON path of the bad field (`principals[0].policy.Statement`), never a value.
 */
export class CredentialsFileError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`QKMS_CREDENTIALS_FILE ${file}: ${problems.join('; ')}`);
  }
}

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
      if (isStartup) throw new CredentialsFileError(this.file, [(err as Error).message]);
      this.logger.error('credentials file unreadable; keeping the previous principals', { file: this.file });
      return;
    }
    if (stamp === this.fileStamp) return;
    try {
      this.fromFile = parse(this.file, fs.readFileSync(this.file, 'utf8'));
      this.fileStamp = stamp;
      this.logger.info('credentials file loaded', { file: this.file, principals: [...this.fromFile.values()].map((p) => p.principalArn) });
    } catch (err) {
      if (isStartup) throw err;
      this.logger.error('credentials file invalid; keeping the previous principals', { file: this.file, problems: (err as CredentialsFileError).problems });
    }
  }
}

function parse(file: string, text: string): Map<string, Credential> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    // Node's JSON.parse message quotes the text around the error, which could be part of a secret:
    // only the position is kept.
    throw new CredentialsFileError(file, [`not valid JSON${jsonErrorLocation(text, (err as Error).message)}`]);
  }
  const { error, value } = fileSchema.validate(json, { abortEarly: false, errors: { label: false } });
  // Joi's messages (without their label) say what is wrong, never the value.
  if (error) throw new CredentialsFileError(file, error.details.map((d) => `${jsonPath(d.path)}: ${d.message}`));
  const credentials = value.principals as Credential[];
  const problems = credentials.flatMap((c, i) => [...publishedCredentialProblems(c, i), ...policyProblems(c, i)]);
  if (problems.length > 0) throw new CredentialsFileError(file, problems);
  return new Map(credentials.map((c) => [c.accessKeyId, c]));
}

/** The published development credential is never a further principal: anyone can sign with it. */
function publishedCredentialProblems(c: Credential, i: number): string[] {
  return [
    c.accessKeyId === DEVELOPMENT_CREDENTIAL.accessKeyId ? `principals[${i}].accessKeyId: the published development key id, which anyone can sign with` : '',
    c.secretAccessKey === DEVELOPMENT_CREDENTIAL.secretAccessKey ? `principals[${i}].secretAccessKey: the published development secret, which anyone can sign with` : '',
  ].filter(Boolean);
}

/** Compiles the identity policy in place; a malformed one names its statement's path. */
function policyProblems(c: Credential, i: number): string[] {
  if (c.policy === undefined) return [];
  const raw = c.policy as unknown as Record<string, unknown>;
  try {
    c.policy = parsePolicy(JSON.stringify(raw), { requirePrincipal: false });
    return [];
  } catch (err) {
    const statements = Array.isArray(raw.Statement) ? raw.Statement : undefined;
    const bad = statements?.findIndex((s) => !compiles({ Statement: [s] })) ?? -1;
    const where = bad >= 0 ? `.Statement[${bad}]` : statements?.length === 0 || raw.Statement === undefined ? '.Statement' : '';
    return [`principals[${i}].policy${where}: ${(err as Error).message}`];
  }
}

function compiles(doc: unknown): boolean {
  try {
    parsePolicy(JSON.stringify(doc), { requirePrincipal: false });
    return true;
  } catch {
    return false;
  }
}

function jsonPath(segments: ReadonlyArray<string | number>): string {
  return segments.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? s : `.${s}`)).join('') || '(top level)';
}

/** " at line L column C" from JSON.parse's "position N", without quoting the text. */
function jsonErrorLocation(text: string, message: string): string {
  const m = /position (\d+)/.exec(message);
  if (!m) return '';
  const before = text.slice(0, Number(m[1])).split('\n');
  return ` at line ${before.length} column ${before[before.length - 1].length + 1}`;
}
