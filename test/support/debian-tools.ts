import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

/**
 * A program a test drives, from a Debian package that `npm test` (scripts/ensure-test-tools.sh)
 * installs when run as root. Elsewhere a missing one skips the test, printing the package to install.
 */
export interface DebianTool {
  readonly command: string;
  readonly debianPackage: string;
}

export const CHROMIUM: DebianTool = { command: '/usr/bin/chromium', debianPackage: 'chromium' };
export const PROMETHEUS: DebianTool = { command: 'prometheus', debianPackage: 'prometheus' };
export const DOCKER_COMPOSE: DebianTool = { command: 'docker-compose', debianPackage: 'docker-compose' };

export function isInstalled(tool: DebianTool): boolean {
  return tool.command.startsWith('/') ? fs.existsSync(tool.command) : spawnSync('sh', ['-c', `command -v ${tool.command}`]).status === 0;
}

/** Skips the calling suite or test (`this` of a mocha hook or test) when the tool is missing, saying which package to install. */
export function skipWithout(ctx: Mocha.Context, tool: DebianTool): void {
  if (isInstalled(tool)) return;
  console.log(`      skipped: ${tool.command} is missing: install the Debian package ${tool.debianPackage} (npm test installs it when run as root)`);
  ctx.skip();
}
