import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** Where Debian and other distributions put shared libraries (multiarch first). */
const LIB_DIRS = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib'];

/** The first `name` under any library directory (optionally in `subdir`), or undefined. */
export function findLibrary(names: string[], subdir = ''): string | undefined {
  for (const dir of LIB_DIRS) for (const name of names) {
    const candidate = path.join(dir, subdir, name);
    if (fs.existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** A command on PATH, or in the sbin directories a non-root PATH often lacks (pkcsconf, pkcsslotd). */
export function findCommand(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    if (dir && fs.existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** The skip reason when Debian packages are missing: names them and the script that installs them. */
export function missingPackages(token: string, packages: string[]): { skip: string } {
  return { skip: `${token} unavailable: missing Debian package(s) ${packages.join(' ')} (run scripts/ensure-tokens.sh as root)` };
}

/** A label no earlier run used, so a test can never find a stale token by accident. */
export function randomLabel(prefix: string): string {
  return `${prefix}-${crypto.randomBytes(4).toString('hex')}`;
}

/** Runs a tool, returning stdout; a failure carries the tool's stderr (never its arguments: PINs). */
export function run(command: string, args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): string {
  try {
    return execFileSync(command, args, { input: options.input, env: options.env ?? process.env, stdio: 'pipe', encoding: 'utf8', timeout: 60_000 });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; status?: number };
    throw new Error(`${path.basename(command)} failed (exit ${e.status}): ${(e.stderr || e.stdout || String(err)).trim()}`);
  }
}
