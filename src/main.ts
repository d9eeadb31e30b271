import { createApp } from './app';
import { describeConfig, loadConfigOrExit } from './config/load-config';
import { buildGateway, openHsm } from './gateway';
import { createLogger } from './logging/logger';
import { createServer } from './server';

/** Exit codes: 2 bad configuration, 3 the HSM or store could not be opened. */
async function main(): Promise<void> {
  const config = loadConfigOrExit(process.env, 'qkms');
  const logger = createLogger({ level: config.logLevel });
  logger.info('starting', { settings: describeConfig(process.env) });
  let gateway;
  try {
    gateway = await buildGateway(config, await openHsm(config, logger), logger);
  } catch (err) {
    logger.error('cannot open the HSM or the key store', { cause: err instanceof Error ? { message: err.message, cause: String((err as Error).cause ?? '') } : String(err) });
    process.exit(3);
  }
  gateway.scheduler.start();
  const server = createServer(config, createApp(gateway.deps));
  server.listen(config.port, config.host, () => {
    const address = server.address();
    logger.info('listening', { address: typeof address === 'object' && address ? `${address.address}:${address.port}` : address, tls: config.tls ? (config.tls.clientCaFile ? 'mutual' : 'server') : 'off' });
  });
  const stop = (signal: string) => {
    logger.info('stopping', { signal });
    server.close(() => void gateway.close().then(() => process.exit(0)));
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

void main();
