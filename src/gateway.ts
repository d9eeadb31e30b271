import fs from 'node:fs';
import path from 'node:path';
import { auditMac } from './audit/audit-mac';
import type { AuditTrail } from './audit/audit-trail';
import { openAuditTrail } from './audit/open-audit-trail';
import { recordSystemEvent } from './audit/system-events';
import { AUDIT_MAC_KEY } from './audit/audit-record';
import { PrincipalStore } from './auth/principals';
import type { Config } from './config/load-config';
import { Envelope, envelopeModes, type EnvelopeModes } from './domain/envelope';
import { coreProblems, missingCapabilities, rsaOaepSha256Note, TokenCannotServe, type TokenCapabilities } from './hsm/capabilities';
import { profileMismatch } from './hsm/profiles';
import { MARKER_MAC_KEY, MarkerCodec } from './domain/marker';
import { ensureInternalKey, reconcileWithToken } from './domain/token-reconciliation';
import { withDeadline } from './hsm/deadline-hsm';
import { withMetrics } from './hsm/metered-hsm';
import type { Hsm } from './hsm/hsm';
import { ensureEmbeddedToken } from './hsm/pkcs11/embedded-token';
import { Pkcs11Hsm } from './hsm/pkcs11/pkcs11-hsm';
import type { RecycleReason } from './hsm/pkcs11/pkcs11-options';
import type { ThreadEvent } from './hsm/thread/hsm-thread';
import { HsmThreads } from './hsm/thread/hsm-threads';
import { KeyUsageTracker } from './domain/key-usage';
import type { Logger } from './logging/logger';
import { GatewayMetrics } from './metrics/gateway-metrics';
import type { GatewayDeps } from './operations/context';
import { Scheduler } from './scheduler';
import { applySeedFile } from './seed';
import { lockDataDir, type DataDirLock } from './store/data-dir-lock';
import { openStore } from './store/open-store';

export interface Gateway {
  deps: GatewayDeps;
  /** Due deletions and automatic rotations; main starts it, tests call tick() on their clock. */
  scheduler: Scheduler;
  /** `keepHsm`: leave the Hsm open for its owner (tests share one per process). */
  close(options?: { keepHsm?: boolean }): Promise<void>;
}

/** Opens the configured token (or the embedded SoftHSM2 one): a wrong PIN or label fails here, at boot. */
export async function openHsm(config: Config, logger: Logger): Promise<Hsm> {
  let { modulePath, pin } = config.pkcs11;
  if (!modulePath) {
    const embedded = ensureEmbeddedToken(config.dataDir, config.pkcs11.tokenLabel);
    if (embedded.created) logger.info('created the embedded SoftHSM2 token', { dataDir: config.dataDir, tokenLabel: config.pkcs11.tokenLabel });
    modulePath = embedded.modulePath;
    pin = embedded.pin;
  } else if (!pin) {
    pin = fs.readFileSync(config.pkcs11.pinFile!, 'utf8').trim();
  }
  if (config.pkcs11.faultsFile) logger.warn('PKCS#11 fault injection is ON (QKMS_FAULTS_FILE): for tests and drills only', { file: config.pkcs11.faultsFile });
  const options = {
    modulePath,
    tokenLabel: config.pkcs11.tokenLabel,
    pin: pin!,
    sessions: config.pkcs11.sessions,
    faultsFile: config.pkcs11.faultsFile,
    initArgs: config.pkcs11.initArgs,
    gcmIv: config.pkcs11.profile.gcmIv,
    integrityErrors: config.pkcs11.profile.integrityErrors,
    recycleAfterSessionObjects: config.pkcs11.recycleAfterSessionObjects,
    staleIndexAfterOwnWrite: config.pkcs11.profile.staleIndexAfterOwnWrite,
    onRecycle: (reason: RecycleReason, objects: number, ms: number) =>
      reason === 'token-index'
        ? logger.info('PKCS#11 module re-initialised to see token objects of other processes', { ms: Math.round(ms) })
        : logger.info('PKCS#11 module re-initialised to free session objects', { objects, ms: Math.round(ms) }),
    onStateChange: (isUp: boolean, detail: string) => (isUp ? logger.warn('HSM token is back; circuit closed', { detail }) : logger.error('HSM token unavailable; failing fast and reconnecting', { detail })),
  };
  if (!config.pkcs11.thread) return Pkcs11Hsm.open(options);
  return HsmThreads.open({
    ...options,
    threads: config.pkcs11.threads,
    stuckAfterMs: config.hsmTimeoutMs,
    maxAbandonedThreads: config.pkcs11.maxAbandonedThreads,
    onReplaced: (detail) => logger.error('HSM thread stuck; abandoned it and started a new one', { detail }),
    onThreadEvent: (event) => logThreadEvent(logger, event),
  });
}

/**
 * The token's capabilities against what QKMS needs: a missing core need stops the start
 * (TokenCannotServe, exit 2); missing optional ones are logged once here and answered with
 * UnsupportedOperationException where they are needed. Returns how this token seals blobs.
 */
function checkCapabilities(config: Config, caps: TokenCapabilities, logger: Logger): EnvelopeModes {
  const problems = coreProblems(caps, config.dataKeyWrap);
  if (problems.length > 0) throw new TokenCannotServe(problems);
  const mismatch = profileMismatch(config.pkcs11.profile, caps.token.manufacturer);
  if (mismatch) logger.warn(mismatch);
  const modes = envelopeModes(caps, config.dataKeyWrap);
  logger.info('token capabilities', {
    token: caps.token,
    dataKeys: modes.dataKeys.join(', '),
    encrypt: modes.encrypt,
    rsaOaepSha256: rsaOaepSha256Note(caps),
    ...(!caps.allowedMechanismsAttribute && { note: 'the token refuses CKA_ALLOWED_MECHANISMS: keys are limited by their usage flags only' }),
    unavailable: missingCapabilities(caps),
  });
  return modes;
}

function logThreadEvent(logger: Logger, event: ThreadEvent): void {
  switch (event.type) {
    case 'left':
      return void logger.warn('an abandoned HSM thread left the PKCS#11 module', { remaining: event.remaining });
    case 'gave-up':
      return void logger.error('stopped replacing stuck HSM threads: every call fails until the process is restarted', { detail: event.detail });
    case 'closing':
      return void logger.warn('closing the HSM without C_Finalize: abandoned HSM threads may still be inside the PKCS#11 module (the process exits once their calls return)', { abandoned: event.abandoned });
  }
}

/**
 * What `npm start` and the direct-mode CLI run: the data dir's single-writer lock first (a second
 * gateway or CLI on the same dir stops here, before it touches the token), then the token, then
 * the gateway.
 */
export async function openGatewayOnDataDir(config: Config, logger: Logger): Promise<Gateway> {
  const lock = takeDataDirLock(config);
  let hsm: Hsm | undefined;
  try {
    hsm = await openHsm(config, logger);
    return await buildGateway(config, hsm, logger, { lock });
  } catch (err) {
    await hsm?.close().catch(() => undefined);
    lock.release();
    throw err;
  }
}

/**
 * Everything the app needs, from a config and an already-open Hsm (tests pass a wrapped one).
 * Creates the internal marker key on first start and reconciles metadata with the token. Takes
 * the data dir's lock unless given it.
 */
export async function buildGateway(
  config: Config,
  rawHsm: Hsm,
  logger: Logger,
  { clock = () => new Date(), lock }: { clock?: () => Date; lock?: DataDirLock } = {},
): Promise<Gateway> {
  const held = lock ?? takeDataDirLock(config);
  try {
    return await openGateway(config, rawHsm, logger, { clock, releaseLock: held.release });
  } catch (err) {
    if (!lock) held.release();
    throw err;
  }
}

/**
 * One writer per data dir: the audit chain, the store and the token's objects (src/store/data-dir-lock.ts).
 * With the store in PostgreSQL the data dir holds at most the embedded token (created under its own
 * lock): replicas and workers share it, and the database coordinates them.
 */
function takeDataDirLock(config: Config): DataDirLock {
  if (config.storeUrl) return { release: () => undefined };
  return lockDataDir(config.dataDir, path.basename(process.argv[1] ?? 'node'));
}

/**
 * The default ARN form (the specification's) is one that clients parsing ARNs as AWS does refuse or
 * mismatch: the AWS Encryption SDK then encrypts but cannot decrypt. Said at every start, so no
 * one walks into it silently (README "ARNs").
 */
function logArnFormat(config: Config, logger: Logger): void {
  if (config.arnFormat === 'aws') {
    logger.info('key ARNs in the AWS form (QKMS_ARN_FORMAT=aws)', { arnFormat: 'aws', example: `arn:aws:kms:${config.region}:${config.accountId}:key/<id>` });
    return;
  }
  logger.warn(
    'key ARNs in the verenc form (QKMS_ARN_FORMAT=verenc, the default): clients that parse ARNs as AWS does need QKMS_ARN_FORMAT=aws — ' +
      "the AWS Encryption SDK (it encrypts, then cannot decrypt), Go's arn.Parse users, Terraform's AWS provider, sops; " +
      'Encryption SDK messages made under one form are read under the other as README "ARNs" says',
    { arnFormat: 'verenc', example: `arn:verenc:${config.accountId}:key/<id>` },
  );
}

async function openGateway(config: Config, rawHsm: Hsm, logger: Logger, { clock, releaseLock }: { clock: () => Date; releaseLock: () => void }): Promise<Gateway> {
  const { keys, coordination, isNew: isNewStore, kind, rateBuckets } = await openStore(config, logger);
  logger.info('key store opened', { store: kind, isNew: isNewStore });
  let audit: AuditTrail | undefined;
  let usage: KeyUsageTracker | undefined;
  try {
    const metrics = new GatewayMetrics(() => rawHsm.stats());
    // Timed outside the deadline: a call past QKMS_HSM_TIMEOUT_MS counts as a 'timeout' error at its deadline.
    const hsm = withMetrics(withDeadline(rawHsm, config.hsmTimeoutMs), metrics);
    const envelopeModes = checkCapabilities(config, rawHsm.capabilities(), logger);
    // Replicas starting together on a fresh deployment: one makes each key, the others find it.
    await coordination.exclusively(async () => {
      for (const ref of [MARKER_MAC_KEY, AUDIT_MAC_KEY]) await ensureInternalKey(hsm, ref);
    });
    const reconciled = await reconcileWithToken({ keys, hsm, logger, owners: coordination });
    // Keys are regional: a store written with another QKMS_REGION (or QKMS_REGIONS) keeps its keys
    // in their regions, which a request can reach only while they are served.
    const unserved = (await keys.regionsWithKeys()).filter((r) => !config.regions.includes(r));
    if (unserved.length > 0) {
      logger.warn('the key store holds keys in regions this gateway does not serve: no request can reach them until QKMS_REGIONS lists those regions (changing QKMS_REGION moves no key)', { regions: unserved, served: config.regions });
    }
    logArnFormat(config, logger);
    const admin = config.adminCredential;
    if (admin.isDevelopmentDefault) {
      logger.warn('no QKMS_ACCESS_KEY_ID set: accepting the public development credential on loopback only', { accessKeyId: admin.accessKeyId });
    }
    const principals = new PrincipalStore(
      { accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey, principalArn: `arn:aws:iam::${config.accountId}:root` },
      config.credentialsFile,
      logger,
    );
    audit = await openAuditTrail(config, { mac: auditMac(hsm), anchors: keys, logger }, { isNewStore, onBatch: (batch) => metrics.auditBatch(batch) });
    usage = new KeyUsageTracker(keys, (err) => logger.warn('could not record key usage (GetKeyLastUsage); retried at the next interval', { error: err instanceof Error ? err.message : String(err) }));
    const deps: GatewayDeps = {
      usage,
      config,
      principals,
      audit,
      scope: { accountId: config.accountId, region: config.region, format: config.arnFormat },
      hsm,
      keys,
      envelope: new Envelope(hsm, envelopeModes),
      markers: new MarkerCodec(hsm),
      clock,
      logger,
      metrics,
      rateBuckets,
      // Missing, orphaned or ambiguous objects are logged and left to an operator, not a reason to
      // refuse all traffic (only the keys concerned are refused). No counts of keys: /ready is
      // unauthenticated; they are in the log.
      startup:
        `reconciled with the token: ${reconciled.rolledBack} unfinished key-material changes rolled back` +
        `${reconciled.leftToRetry > 0 ? ` (${reconciled.leftToRetry} could not be; the scheduler retries them)` : ''}` +
        `${reconciled.inFlight > 0 ? `, ${reconciled.inFlight} in flight on live replicas left to them` : ''}, ${reconciled.missing.length} objects missing, ` +
        `${reconciled.orphaned.length} orphaned, ${reconciled.ambiguous.length} ambiguous${config.seedFile ? '; seed file applied' : ''}` +
        `${unserved.length > 0 ? `; keys in regions not served: ${unserved.join(', ')}` : ''}`,
    };
    if (config.seedFile) {
      const seeded = await applySeedFile(config.seedFile, deps);
      logger.info('seed file applied', { file: config.seedFile, ...seeded });
    }
    const scheduler = new Scheduler({ ...deps, regions: config.regions, onFailure: (work) => metrics.schedulerFailure(work), recordEvent: (operation, keyId, errorCode, region) => recordSystemEvent({ ...deps, scope: { ...deps.scope, region } }, 'scheduler', operation, keyId, errorCode) }, config.schedulerIntervalMs, {
      holds: () => coordination.holdsSchedulerLease(),
      takeoverMs: config.schedulerTakeoverMs,
    });
    metrics.keysInBackoff = () => scheduler.keysInBackoff;
    const opened = audit;
    return {
      deps,
      scheduler,
      async close({ keepHsm = false } = {}) {
        principals.close();
        await scheduler.stop();
        await opened.close();
        await usage?.close();
        await keys.close();
        await coordination.close();
        if (!keepHsm) await rawHsm.close();
        releaseLock();
      },
    };
  } catch (err) {
    // Nothing may keep writing once the caller releases the data-dir lock.
    await audit?.close().catch(() => undefined);
    await usage?.close().catch(() => undefined);
    await keys.close();
    await coordination.close();
    throw err;
  }
}

