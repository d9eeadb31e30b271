import Joi from 'joi';
import { DATA_KEY_WRAP_MODES } from '../hsm/capabilities';
import { HSM_PROFILES } from '../hsm/profiles';

/** An AWS region id (us-east-1, ap-southeast-2, us-gov-west-1), or `local`. */
const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$|^local$/;
const REGION_LIST = /^([a-z]{2}(-[a-z]+)+-\d+|local)(,([a-z]{2}(-[a-z]+)+-\d+|local))*$/;

/** Environment variables QKMS understands, with type, range, default and the reason for each. */
export const configSchema = Joi.object({
  QKMS_PORT: Joi.number().integer().min(0).max(65535).default(8080),
  // Loopback by default: request authentication arrives with the security issue, so exposing the
  // port to a network must be a deliberate choice.
  QKMS_HOST: Joi.string().hostname().default('127.0.0.1'),
  QKMS_DATA_DIR: Joi.string().min(1).default('./data'),
  // Unset: the embedded SQLite store in QKMS_DATA_DIR (one gateway process). postgres://user:password@host:port/db:
  // key metadata in PostgreSQL, which several gateway replicas can share. Holds a password: logged without it.
  // PostgreSQL connections per gateway process: size with the server's max_connections over all replicas.
  QKMS_STORE_POOL_SIZE: Joi.number().integer().min(1).max(100).default(10),
  QKMS_STORE_URL: Joi.string().uri({ scheme: ['postgres', 'postgresql'] }).messages({ 'string.uriCustomScheme': '{{#label}} must be a postgres:// or postgresql:// URL' }),
  QKMS_ACCOUNT_ID: Joi.string().pattern(/^\d{12}$/).default('111122223333'),
  QKMS_REGION: Joi.string().pattern(REGION).default('us-east-1'),
  // Every region this deployment serves (comma-separated), QKMS_REGION among them: keys are
  // regional, and multi-Region keys replicate between them. Unset: QKMS_REGION alone.
  QKMS_REGIONS: Joi.string().pattern(REGION_LIST).messages({ 'string.pattern.base': '{{#label}} must be a comma-separated list of regions such as us-east-1,eu-west-1' }),
  // verenc: the seed page's `arn:verenc:<account>:key/<id>`; aws: the six-part ARN that the AWS
  // Encryption SDK requires (pkcs11-and-clients.md §4).
  QKMS_ARN_FORMAT: Joi.string().valid('verenc', 'aws').default('verenc'),
  // The admin credential (principal arn:aws:iam::<account>:root). Unset, a documented development
  // credential applies, and only while QKMS_HOST is a loopback address (load-config.ts).
  QKMS_ACCESS_KEY_ID: Joi.string().pattern(/^[A-Z0-9]{16,128}$/),
  QKMS_SECRET_ACCESS_KEY: Joi.string().min(16).max(128),
  // More principals (JSON; README "Principals"), re-read on change without a restart.
  QKMS_CREDENTIALS_FILE: Joi.string().min(1),
  // How far a request's X-Amz-Date may be from the gateway's clock, either way (kms-protocol.md §3.3).
  QKMS_SIGV4_CLOCK_SKEW_SECONDS: Joi.number().integer().min(1).max(3600).default(300),
  // Unset: the embedded SoftHSM2 token in QKMS_DATA_DIR, created on first start.
  QKMS_PKCS11_MODULE: Joi.string().min(1),
  QKMS_PKCS11_TOKEN_LABEL: Joi.string().min(1).max(32).default('qkms'),
  QKMS_PKCS11_PIN: Joi.string().min(4).max(255),
  QKMS_PKCS11_PIN_FILE: Joi.string().min(1),
  // The init string some modules need in C_Initialize (NSS softoken: configdir='sql:DIR' …),
  // passed as pkcs11js libraryParameters. Configuration, not a secret: never logged all the same.
  QKMS_PKCS11_INIT_ARGS: Joi.string().min(1).max(4096),
  // What differs between tokens (src/hsm/profiles.ts, docs/hsm/). Unset: softhsm2 for the
  // embedded token and for a module named like libsofthsm2.so, generic for any other module.
  QKMS_HSM_PROFILE: Joi.string().valid(...Object.keys(HSM_PROFILES)),
  // One PKCS#11 session serves one operation at a time; sized with the HSM's own limits.
  // Unset: the profile's default.
  QKMS_PKCS11_SESSIONS: Joi.number().integer().min(1).max(256),
  // Finalise and re-initialise the module after this many session objects (data keys made or
  // unwrapped), to free tokens that keep them until C_Finalize (SoftHSM2). 0 = never. Unset: the
  // profile's (softhsm2: 50000, the others: never).
  QKMS_PKCS11_RECYCLE_SESSION_OBJECTS: Joi.number().integer().min(0).max(1000000000),
  // true: every PKCS#11 call runs on a dedicated HSM thread, so the HTTP event loop never blocks on
  // the token and a hung call is abandoned (src/hsm/thread). false: calls run on the event loop.
  QKMS_HSM_THREAD: Joi.boolean().default(true),
  // With the HSM thread: how many HSM threads call the module at once, QKMS_PKCS11_SESSIONS shared
  // among them. More let a network HSM's round trips overlap. Unset: the profile's (softhsm2: 1).
  QKMS_HSM_THREADS: Joi.number().integer().min(1).max(32),
  // HSM calls outstanding (waiting for an HSM thread or in one) past which a new request answers
  // ThrottlingException at once (the SDKs retry with backoff) instead of waiting in line.
  QKMS_HSM_MAX_QUEUE: Joi.number().integer().min(1).max(100000).default(1000),
  // An HSM call slower than this answers DependencyTimeoutException (kms-protocol.md §2.2).
  QKMS_HSM_TIMEOUT_MS: Joi.number().integer().min(1).max(600000).default(5000),
  // With the HSM thread: how many stuck threads may be abandoned while still inside the PKCS#11
  // module (each holds a thread and sessions, and blocks C_Finalize). One more stuck thread is not
  // replaced: every call fails fast and /ready says to restart. 0 = never replace one.
  QKMS_HSM_MAX_ABANDONED_THREADS: Joi.number().integer().min(0).max(100).default(3),
  // How data keys are sealed: AES_KWP_HMAC, AES_GCM (tokens whose C_WrapKey does GCM),
  // AES_CBC_HMAC or AES_GCM_ENCRYPT (a random key sealed with C_Encrypt AES-GCM; docs/crypto.md). Unset: the first the token can do, found at start-up; set, a
  // token that cannot do it stops the start.
  QKMS_DATA_KEY_WRAP: Joi.string().valid(...DATA_KEY_WRAP_MODES),
  // The largest request body accepted; the largest KMS request (a 128 KiB policy) fits.
  QKMS_MAX_BODY_BYTES: Joi.number().integer().min(1024).max(16777216).default(262144),
  // KMS documents no limit (kms-protocol.md §6, §11 item 7); 8 KiB of canonical encoding is ours.
  QKMS_MAX_ENCRYPTION_CONTEXT_BYTES: Joi.number().integer().min(64).max(65536).default(8192),
  // How often due key deletions and automatic rotations run.
  QKMS_SCHEDULER_INTERVAL_MS: Joi.number().integer().min(1000).max(86400000).default(60000),
  // With QKMS_STORE_URL: how often a replica without the scheduler lease tries to take it (how soon
  // it takes over from a holder that died).
  QKMS_SCHEDULER_TAKEOVER_MS: Joi.number().integer().min(500).max(600000).default(5000),
  // At most 1 s: the bound on another replica's change being seen (a DisableKey refused everywhere).
  QKMS_KEY_CACHE_MS: Joi.number().integer().min(0).max(1000).default(500),
  // Keys with fixed ids (YAML or JSON) created on start when missing (src/seed.ts), e.g. for CI pipelines.
  QKMS_SEED_FILE: Joi.string().min(1),
  // With QKMS_SEED_FILE: an existing key whose description, tags or rotation differ from the file is
  // changed to match it, through the operations a client would call, audited. Off by default: the
  // file creates keys and an operator's later changes win; the differences are logged either way.
  // No joi default (false in load-config.ts): a default would trip the QKMS_SEED_FILE peer check.
  QKMS_SEED_APPLY_CHANGES: Joi.boolean(),
  // Gateway processes on this machine (node:cluster, one listening port). More than one needs
  // QKMS_STORE_URL (load-config.ts says why). Default 1: more were slower on the 2-core machines
  // this is built on (README "Replicas and workers").
  QKMS_WORKERS: Joi.number().integer().min(1).max(256),
  // With QKMS_STORE_URL: the name of this replica's audit chain, held by one live process at a
  // time. Unset: the first free <hostname>-<n> (docs/crypto.md "Audit trail in PostgreSQL").
  QKMS_REPLICA_ID: Joi.string().pattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/),
  // Audit trail (QKMS_DATA_DIR/audit): a segment file is closed past this size and the chain
  // continues in the next one.
  QKMS_AUDIT_SEGMENT_BYTES: Joi.number().integer().min(4096).max(17179869184).default(67108864),
  // true: a request whose audit record cannot be written is answered anyway (logged loudly).
  // Default false: it fails with KMSInternalException and returns nothing (docs/crypto.md).
  QKMS_AUDIT_FAIL_OPEN: Joi.boolean().default(false),
  // Every batch of records is now signed in the HSM before its answers leave: nothing left to set.
  QKMS_AUDIT_CHECKPOINT_SECONDS: removed('every batch of audit records is signed by the HSM before its answers are sent'),
  QKMS_AUDIT_CHECKPOINT_RECORDS: removed('every batch of audit records is signed by the HSM before its answers are sent'),
  // HTTPS: both or neither (PEM files). With QKMS_TLS_CLIENT_CA, clients must present a
  // certificate issued by that CA (mutual TLS), in addition to signing requests.
  QKMS_TLS_CERT: Joi.string().min(1),
  QKMS_TLS_KEY: Joi.string().min(1),
  QKMS_TLS_CLIENT_CA: Joi.string().min(1),
  // A second, plain-HTTP listener serving only GET /health, /ready and /metrics, for probes that
  // cannot present a client certificate (kubelet) while QKMS_TLS_CLIENT_CA guards the KMS port.
  // Unset: no such listener. QKMS_PROBE_HOST (default QKMS_HOST) is its address.
  QKMS_PROBE_PORT: Joi.number().integer().min(0).max(65535),
  QKMS_PROBE_HOST: Joi.string().hostname(),
  // Requests per second per principal (token bucket, burst = one second's worth); 0 = no limit.
  // Above it: ThrottlingException, which the SDKs retry with backoff.
  QKMS_RATE_LIMIT_PER_SECOND: Joi.number().min(0).max(1000000).default(0),
  // Tests and drills only: scripted PKCS#11 failures (src/hsm/pkcs11/faults.ts). Never in production.
  QKMS_FAULTS_FILE: Joi.string().min(1),
  // On SIGTERM/SIGINT, how long in-flight requests may take before their connections are cut.
  QKMS_SHUTDOWN_GRACE_MS: Joi.number().integer().min(0).max(600000).default(10000),
  QKMS_LOG_LEVEL: Joi.string().valid('error', 'warn', 'info', 'debug').default('info'),
})
  .and('QKMS_ACCESS_KEY_ID', 'QKMS_SECRET_ACCESS_KEY')
  .and('QKMS_TLS_CERT', 'QKMS_TLS_KEY')
  .with('QKMS_TLS_CLIENT_CA', 'QKMS_TLS_CERT')
  .with('QKMS_PROBE_HOST', 'QKMS_PROBE_PORT')
  .with('QKMS_SEED_APPLY_CHANGES', 'QKMS_SEED_FILE')
  .oxor('QKMS_PKCS11_PIN', 'QKMS_PKCS11_PIN_FILE');

/** A setting that no longer exists: the operator is told why instead of "not allowed". */
function removed(why: string): Joi.Schema {
  return Joi.any().forbidden().messages({ 'any.unknown': `{{#label}} was removed (${why}): delete it` });
}

export const SENSITIVE_SETTINGS = new Set(['QKMS_SECRET_ACCESS_KEY', 'QKMS_PKCS11_PIN']);

/** URLs that may carry a password: logged with the password as ***. */
export const URL_SETTINGS = new Set(['QKMS_STORE_URL']);

/** Not secrets, but their values stay out of logs (an init string names paths): logged as set. */
export const UNLOGGED_SETTINGS = new Set(['QKMS_PKCS11_INIT_ARGS']);
