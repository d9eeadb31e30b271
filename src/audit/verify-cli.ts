import { runCli } from '../cli/qkms';

/**
 * `npm run audit:verify`: an alias of `qkms audit verify` (src/cli/commands/audit.ts), kept for
 * the scripts that call it. Exit 0 intact, 1 tampered, 2 bad config.
 */
void runCli(['audit', 'verify'], process.env).then((code) => {
  process.exitCode = code;
});
