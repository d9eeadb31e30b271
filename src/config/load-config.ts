import path from 'node:path';
import type { DataKeyWrapMode } from '../hsm/capabilities';
import { HSM_PROFILES, type HsmProfile } from '../hsm/profiles';
import { configSchema, SENSITIVE_SETTINGS, UNLOGGED_SETTINGS, URL_SETTINGS } from './schema';
import { explainServiceLinks } from './service-links';

export type ArnFormat = 'verenc' | 'aws';
/** How data keys are wrapped (QKMS_DATA_KEY_WRAP); the HSM-level request is hsm.ts DataKeyWrap. */
export type { DataKeyWrapMode };

/** The whole, validated configuration. Built once in main.ts and passed down; never read from env elsewhere. */
export interface Config {
  readonly port: number;
  readonly host: string;
  readonly dataDir: string;
  /** QKMS_STORE_URL: key metadata in PostgreSQL; undefined = SQLite in dataDir. Holds a password: never log it. */
  readonly storeUrl?: string;
  /** QKMS_WORKERS: gateway processes on this machine sharing the port (src/workers.ts). */
  readonly workers: number;
  /** QKMS_STORE_POOL_SIZE: PostgreSQL connections of this process. */
  readonly storePoolSize: number;
  readonly accountId: string;
  /** QKMS_REGION: the home region (the console's, the CLI's, and that of keys stored before regions existed). */
  readonly region: string;
  /** QKMS_REGIONS: every region served, the home region first. */
  readonly regions: readonly string[];
  readonly arnFormat: ArnFormat;
  readonly adminCredential: { readonly accessKeyId: string; readonly secretAccessKey: string; readonly isDevelopmentDefault: boolean };
  readonly credentialsFile?: string;
  readonly clockSkewSeconds: number;
  readonly pkcs11: {
    /** Undefined means the embedded SoftHSM2 token in dataDir. */
    readonly modulePath?: string;
    readonly tokenLabel: string;
    readonly pin?: string;
    readonly pinFile?: string;
    /** QKMS_PKCS11_INIT_ARGS: the module's C_Initialize init string (NSS softoken's configdir=…). */
    readonly initArgs?: string;
    readonly sessions: number;
    readonly faultsFile?: string;
    /** QKMS_HSM_THREAD: PKCS#11 calls on their own thread rather than the event loop. */
    readonly thread: boolean;
    /** QKMS_HSM_MAX_ABANDONED_THREADS: stuck HSM threads replaced while still inside the module. */
    readonly maxAbandonedThreads: number;
    /** QKMS_HSM_THREADS (default: the profile's): HSM threads calling the module at once. */
    readonly threads: number;
    /** QKMS_HSM_MAX_QUEUE: HSM calls outstanding past which a new request answers ThrottlingException. */
    readonly maxQueued: number;
    /** QKMS_PKCS11_RECYCLE_SESSION_OBJECTS, or the profile's; undefined = never. */
    readonly recycleAfterSessionObjects?: number;
    /** QKMS_HSM_PROFILE: what this token does differently (src/hsm/profiles.ts). */
    readonly profile: HsmProfile;
  };
  readonly hsmTimeoutMs: number;
  /** QKMS_DATA_KEY_WRAP: unset, the token's best construction (capability discovery). */
  readonly dataKeyWrap?: DataKeyWrapMode;
  readonly maxBodyBytes: number;
  readonly maxEncryptionContextBytes: number;
  readonly schedulerIntervalMs: number;
  readonly schedulerTakeoverMs: number;
  /** QKMS_KEY_CACHE_MS: how long key records, materials and alias targets answer from memory (0: never). */
  readonly keyCacheMs: number;
  readonly audit: { readonly maxSegmentBytes: number; readonly isFailOpen: boolean; readonly replicaId?: string };
  readonly seedFile?: string;
  /** QKMS_SEED_APPLY_CHANGES: existing keys are changed to match the seed file (src/seed.ts). */
  readonly isApplyingSeedChanges: boolean;
  readonly tls?: { readonly certFile: string; readonly keyFile: string; readonly clientCaFile?: string };
  /** QKMS_PROBE_PORT/QKMS_PROBE_HOST: the plain-HTTP listener for /health, /ready and /metrics only; undefined = none. */
  readonly probe?: { readonly port: number; readonly host: string };
  readonly rateLimitPerSecond: number;
  readonly shutdownGraceMs: number;
  readonly logLevel: string;
}

/**
 * The admin credential when none is configured: public by design (README "Quick start"), so that
 * `npm start` works out of the box, and refused for any non-loopback QKMS_HOST.
 */
export const DEVELOPMENT_CREDENTIAL = { accessKeyId: 'AKIAQKMSLOCALDEV0001', secretAccessKey: 'qkms-local-development-only' } as const;
const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

type Env = Record<string, string | undefined>;

/** QKMS_ variables of the `qkms` CLI (docs/cli.md), not the gateway's: one shell may export both. */
const CLI_SETTINGS = new Set(['QKMS_ENDPOINT']);

/** Validates every QKMS_* variable at once (abortEarly off) and rejects unknown ones (typos). */
export function loadConfig(env: Env): Config {
  const ours = Object.fromEntries(Object.entries(env).filter(([k, v]) => k.startsWith('QKMS_') && !CLI_SETTINGS.has(k) && v !== undefined));
  const { error, value } = configSchema.validate(ours, { abortEarly: false, convert: true });
  if (error) {
    throw new ConfigError(explainServiceLinks(ours, error.details.map((d) => ({ key: String(d.path[0]), message: d.message.replace(/^"(\w+)"/, '$1') }))));
  }
  const isDevelopmentDefault = !value.QKMS_ACCESS_KEY_ID;
  if (!LOOPBACK.test(value.QKMS_HOST)) refuseDevelopmentCredential(value.QKMS_HOST, value.QKMS_ACCESS_KEY_ID, value.QKMS_SECRET_ACCESS_KEY);
  if (value.QKMS_PKCS11_MODULE && !value.QKMS_PKCS11_PIN && !value.QKMS_PKCS11_PIN_FILE) {
    throw new ConfigError(['QKMS_PKCS11_PIN or QKMS_PKCS11_PIN_FILE is required when QKMS_PKCS11_MODULE is set']);
  }
  const profileName = value.QKMS_HSM_PROFILE ?? defaultProfile(value.QKMS_PKCS11_MODULE);
  const profile = HSM_PROFILES[profileName];
  const workers: number = value.QKMS_WORKERS ?? 1;
  if (workers > 1 && !value.QKMS_STORE_URL) {
    // The embedded store is one SQLite file with one writer: the data-dir lock, the file audit
    // trail (one hash chain, one appending process) and the store's writes all assume one process.
    throw new ConfigError([
      `QKMS_WORKERS=${workers} needs QKMS_STORE_URL (PostgreSQL): the embedded store in QKMS_DATA_DIR (SQLite, its audit trail and its lock) has one writer process. Use QKMS_WORKERS=1, or a PostgreSQL database (docs/operations.md "Replicas and workers")`,
    ]);
  }
  if (value.QKMS_PKCS11_INIT_ARGS && profileName === 'softhsm2') {
    // pkcs11js passes the string where the standard C_Initialize arguments have pReserved, which
    // SoftHSM2 requires to be NULL (docs/hsm/softhsm2.md): it would refuse to start.
    throw new ConfigError(['QKMS_PKCS11_INIT_ARGS is not for SoftHSM2 (it answers C_Initialize with CKR_ARGUMENTS_BAD when given an init string); leave it unset']);
  }
  const regions = servedRegions(value.QKMS_REGION, value.QKMS_REGIONS, value.QKMS_ARN_FORMAT);
  return deepFreeze({
    port: value.QKMS_PORT,
    host: value.QKMS_HOST,
    dataDir: path.resolve(value.QKMS_DATA_DIR),
    storeUrl: value.QKMS_STORE_URL,
    workers,
    storePoolSize: value.QKMS_STORE_POOL_SIZE,
    accountId: value.QKMS_ACCOUNT_ID,
    region: value.QKMS_REGION,
    regions,
    arnFormat: value.QKMS_ARN_FORMAT,
    adminCredential: isDevelopmentDefault
      ? { ...DEVELOPMENT_CREDENTIAL, isDevelopmentDefault }
      : { accessKeyId: value.QKMS_ACCESS_KEY_ID, secretAccessKey: value.QKMS_SECRET_ACCESS_KEY, isDevelopmentDefault },
    credentialsFile: value.QKMS_CREDENTIALS_FILE,
    clockSkewSeconds: value.QKMS_SIGV4_CLOCK_SKEW_SECONDS,
    pkcs11: {
      modulePath: value.QKMS_PKCS11_MODULE,
      tokenLabel: value.QKMS_PKCS11_TOKEN_LABEL,
      pin: value.QKMS_PKCS11_PIN,
      pinFile: value.QKMS_PKCS11_PIN_FILE,
      initArgs: value.QKMS_PKCS11_INIT_ARGS,
      sessions: value.QKMS_PKCS11_SESSIONS ?? profile.sessions,
      faultsFile: value.QKMS_FAULTS_FILE,
      thread: value.QKMS_HSM_THREAD,
      maxAbandonedThreads: value.QKMS_HSM_MAX_ABANDONED_THREADS,
      threads: value.QKMS_HSM_THREADS ?? profile.threads,
      maxQueued: value.QKMS_HSM_MAX_QUEUE,
      recycleAfterSessionObjects: (value.QKMS_PKCS11_RECYCLE_SESSION_OBJECTS ?? profile.recycleAfterSessionObjects) || undefined,
      profile,
    },
    hsmTimeoutMs: value.QKMS_HSM_TIMEOUT_MS,
    dataKeyWrap: value.QKMS_DATA_KEY_WRAP,
    maxBodyBytes: value.QKMS_MAX_BODY_BYTES,
    maxEncryptionContextBytes: value.QKMS_MAX_ENCRYPTION_CONTEXT_BYTES,
    schedulerIntervalMs: value.QKMS_SCHEDULER_INTERVAL_MS,
    schedulerTakeoverMs: value.QKMS_SCHEDULER_TAKEOVER_MS,
    keyCacheMs: value.QKMS_KEY_CACHE_MS,
    audit: { maxSegmentBytes: value.QKMS_AUDIT_SEGMENT_BYTES, isFailOpen: value.QKMS_AUDIT_FAIL_OPEN, replicaId: value.QKMS_REPLICA_ID },
    seedFile: value.QKMS_SEED_FILE,
    isApplyingSeedChanges: value.QKMS_SEED_APPLY_CHANGES === true,
    tls: value.QKMS_TLS_CERT ? { certFile: value.QKMS_TLS_CERT, keyFile: value.QKMS_TLS_KEY, clientCaFile: value.QKMS_TLS_CLIENT_CA } : undefined,
    probe: probeListener(value.QKMS_PROBE_PORT, value.QKMS_PROBE_HOST ?? value.QKMS_HOST, value.QKMS_PORT),
    rateLimitPerSecond: value.QKMS_RATE_LIMIT_PER_SECOND,
    shutdownGraceMs: value.QKMS_SHUTDOWN_GRACE_MS,
    logLevel: value.QKMS_LOG_LEVEL,
  });
}

/**
 * Beyond loopback the admin credential must be the operator's own. The published development
 * credential is refused there however it arrives: by default, or passed explicitly (a compose file
 * or a script that copies it from the README), its key id or its secret alone (either half is public).
 */
function refuseDevelopmentCredential(host: string, accessKeyId: string | undefined, secretAccessKey: string | undefined): void {
  if (!accessKeyId) {
    throw new ConfigError([`QKMS_ACCESS_KEY_ID and QKMS_SECRET_ACCESS_KEY are required when QKMS_HOST (${host}) is not a loopback address: the development credential is public`]);
  }
  const published = [
    accessKeyId === DEVELOPMENT_CREDENTIAL.accessKeyId ? `QKMS_ACCESS_KEY_ID is the published development key id ${DEVELOPMENT_CREDENTIAL.accessKeyId}` : undefined,
    secretAccessKey === DEVELOPMENT_CREDENTIAL.secretAccessKey ? 'QKMS_SECRET_ACCESS_KEY is the published development secret' : undefined,
  ].filter((p): p is string => p !== undefined);
  if (published.length > 0) {
    throw new ConfigError([`${published.join(' and ')}, which anyone can sign with: refused while QKMS_HOST (${host}) is not a loopback address. Generate your own (README "docker-compose": scripts/compose-env.sh)`]);
  }
}

/** softhsm2 for the embedded token or a module named like SoftHSM's (libsofthsm2.so), generic otherwise. */
function defaultProfile(modulePath: string | undefined): string {
  return !modulePath || /softhsm/i.test(path.basename(modulePath)) ? 'softhsm2' : 'generic';
}

/** For process entry points: the config, or the problems on stderr and exit code 2. */
export function loadConfigOrExit(env: Env, command: string): Config {
  try {
    return loadConfig(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${command}: ${err.message}\n`);
    process.exit(2);
  }
}

/** The start-up summary: every setting, secrets as ***, unlogged ones as (set). */
export function describeConfig(env: Env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (k.startsWith('QKMS_') && v !== undefined) out[k] = SENSITIVE_SETTINGS.has(k) ? '***' : UNLOGGED_SETTINGS.has(k) ? '(set)' : URL_SETTINGS.has(k) ? withoutPassword(v) : v;
  }
  return out;
}

/** The URL with its password as ***; a value that is no URL (refused by the schema anyway) as ***. */
function withoutPassword(value: string): string {
  try {
    const url = new URL(value);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return '***';
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * QKMS_REGIONS as a list with QKMS_REGION first. Several regions need QKMS_ARN_FORMAT=aws: a
 * verenc ARN (`arn:verenc:<account>:key/<id>`) has no region, so the ARNs of a multi-Region key's
 * primary and replicas would be one string, and a client could not tell which region's key it holds.
 */
function servedRegions(home: string, list: string | undefined, arnFormat: ArnFormat): string[] {
  if (list === undefined) return [home];
  const listed = list.split(',');
  if (!listed.includes(home)) {
    throw new ConfigError([`QKMS_REGIONS (${list}) must include QKMS_REGION (${home}): the home region is where the console, the CLI and keys stored before regions existed live`]);
  }
  const regions = [home, ...new Set(listed.filter((r) => r !== home))];
  if (regions.length > 1 && arnFormat !== 'aws') {
    throw new ConfigError([`QKMS_REGIONS serves ${regions.length} regions, which needs QKMS_ARN_FORMAT=aws: verenc ARNs (arn:verenc:<account>:key/<id>) carry no region, so a key's ARN could not say which region's key it names`]);
  }
  return regions;
}

/** The probe listener, on its own port: sharing the KMS port would put the probes behind its TLS again. */
function probeListener(port: number | undefined, host: string, kmsPort: number): Config['probe'] {
  if (port === undefined) return undefined;
  if (port !== 0 && port === kmsPort) {
    throw new ConfigError([`QKMS_PROBE_PORT (${port}) must differ from QKMS_PORT: the probe listener is a second, plain-HTTP port beside the KMS one`]);
  }
  return { port, host };
}
