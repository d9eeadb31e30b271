// The compiled gateway (dist/) as dist/main.js builds it, for `npm run bench:audit` only: with
// BENCH_AUDIT=off its audit log drops every record at once, the "without the durable trail" side
// of the comparison. Nothing else differs. Never run it in production.
const { createApp } = require('../dist/app');
const { loadConfigOrExit } = require('../dist/config/load-config');
const { openGatewayOnDataDir } = require('../dist/gateway');
const { createLogger } = require('../dist/logging/logger');
const { createServer } = require('../dist/server');

async function main() {
  const config = loadConfigOrExit(process.env, 'audit-gateway');
  const gateway = await openGatewayOnDataDir(config, createLogger({ level: config.logLevel }));
  const deps = process.env.BENCH_AUDIT === 'off' ? { ...gateway.deps, audit: { record: async () => undefined } } : gateway.deps;
  const server = createServer(config, createApp(deps));
  server.listen(config.port, config.host);
  process.once('SIGTERM', () => {
    server.close(() => void gateway.close().then(() => process.exit(0)));
    server.closeAllConnections();
  });
}

main().catch((err) => {
  process.stderr.write(`audit-gateway: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(3);
});
