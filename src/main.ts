#!/usr/bin/env node
import cluster from 'node:cluster';
import type { RequestListener, Server } from 'node:http';
import { createApp } from './app';
import { AuditTrailRefused } from './audit/audit-startup';
import { CredentialsFileError } from './auth/principals';
import { describeConfig, loadConfigOrExit, type Config } from './config/load-config';
import { openGatewayOnDataDir, type Gateway } from './gateway';
import { TokenCannotServe } from './hsm/capabilities';
import { startingApp } from './http/starting';
import { createLogger, type Logger } from './logging/logger';
import { SeedFileError } from './seed';
import { supportedNodeLines, unsupportedNode } from './runtime';
import { createProbeServer, createServer } from './server';
import { superviseWorkers } from './workers';

/** Exit codes: 2 bad configuration (including the seed file, the credentials file, and a token that lacks what QKMS needs), 3 the HSM, the store, the audit trail or the port could not be opened. */
async function main(): Promise<void> {
  const config = loadConfigOrExit(process.env, 'qkms');
  const logger = createLogger({ level: config.logLevel, worker: cluster.worker?.id });
  if (config.workers > 1 && cluster.isPrimary) {
    logger.info('starting', { settings: describeConfig(process.env) });
    return superviseWorkers(config.workers, logger, config.audit.replicaId);
  }
  logger.info('starting', { settings: describeConfig(process.env) });
  const runtime = unsupportedNode(process.versions.node, supportedNodeLines());
  if (runtime) logger.warn(runtime, { node: process.version });
  // Listen before the token and the store are open: while a long start runs (many token objects to
  // index, a seed file) /health and /ready answer 503 "starting" and KMS requests a retryable
  // DependencyTimeoutException (http/starting.ts), so an orchestrator sees a live, unready process.
  let app: RequestListener = startingApp(logger);
  const server = createServer(config, (req, res) => app(req, res));
  server.once('error', (err) => {
    logger.error('cannot listen', { host: config.host, port: config.port, cause: err.message });
    process.exit(3);
  });
  server.listen(config.port, config.host, () => {
    const address = server.address();
    logger.info('listening', { address: typeof address === 'object' && address ? `${address.address}:${address.port}` : address, tls: config.tls ? (config.tls.clientCaFile ? 'mutual' : 'server') : 'off' });
  });
  const servers = [server, ...listenForProbes(config, (req, res) => app(req, res), logger)];

  const starting = openGatewayOnDataDir(config, logger);
  let isStopping = false;
  // Stop accepting, let in-flight requests finish for up to QKMS_SHUTDOWN_GRACE_MS, then cut the
  // rest; always end with the last audit batch committed, closed sessions and C_Finalize. A signal
  // during start-up waits (as long as the grace) for the start to finish, then closes it the same way.
  const stop = async (signal: string) => {
    if (isStopping) return;
    isStopping = true;
    logger.info('stopping', { signal });
    const closed = Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
    // A keep-alive connection becomes idle when its in-flight response ends: close it then, not
    // after the keep-alive timeout.
    const closeIdle = () => servers.forEach((s) => s.closeIdleConnections());
    const idle = setInterval(closeIdle, 50);
    closeIdle();
    const cut = setTimeout(() => servers.forEach((s) => s.closeAllConnections()), config.shutdownGraceMs);
    await closed;
    clearInterval(idle);
    clearTimeout(cut);
    const started = await Promise.race([starting.catch(() => undefined), new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), config.shutdownGraceMs).unref())]);
    if (started) await started.close();
    else logger.warn('the start-up did not finish (failed, or still running after QKMS_SHUTDOWN_GRACE_MS); nothing to close');
    logger.info('stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));

  let gateway: Gateway;
  try {
    gateway = await starting;
  } catch (err) {
    if (isStopping) return; // stop() reports and exits
    if (err instanceof SeedFileError) {
      logger.error('the seed file cannot be applied', { reason: err.message });
      process.exit(2);
    }
    if (err instanceof CredentialsFileError) {
      logger.error('refusing to start: the credentials file is invalid', { file: err.file, problems: err.problems });
      process.exit(2);
    }
    if (err instanceof TokenCannotServe) {
      logger.error('refusing to start: the token lacks what QKMS needs (qkms token capabilities prints the whole table)', { missing: err.problems });
      process.exit(2);
    }
    if (err instanceof AuditTrailRefused) {
      logger.error('refusing to start: the audit trail does not verify against its anchor, and the gateway does not extend such a trail (qkms audit verify names the first bad record)', { reason: err.message });
      process.exit(3);
    }
    logger.error('cannot open the HSM or the key store', { cause: err instanceof Error ? { message: err.message, cause: String((err as Error).cause ?? '') } : String(err) });
    process.exit(3);
  }
  if (isStopping) return;
  gateway.scheduler.start();
  app = createApp(gateway.deps);
  logger.info('ready', { startup: gateway.deps.startup });
}

/** QKMS_PROBE_PORT: the plain-HTTP probe listener beside the KMS port (server.ts), or none. */
function listenForProbes(config: Config, app: RequestListener, logger: Logger): Server[] {
  if (!config.probe) return [];
  const { port, host } = config.probe;
  const probes = createProbeServer(app);
  probes.once('error', (err) => {
    logger.error('cannot listen for probes', { host, port, cause: err.message });
    process.exit(3);
  });
  probes.listen(port, host, () => {
    const address = probes.address();
    logger.info('listening for probes', { address: typeof address === 'object' && address ? `${address.address}:${address.port}` : address, serves: 'GET /health, /ready, /metrics (plain HTTP)' });
  });
  return [probes];
}

void main();
