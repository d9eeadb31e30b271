import fs from 'node:fs';
import path from 'node:path';

/**
 * The Node.js release lines this release is tested on: package.json's `engines.node`, written as
 * `^N || ^M`, is the one list — `.ci/run` runs the whole suite on each line it names, `.nvmrc` (the
 * documented default and the container image's line) is one of them. Anything else still starts,
 * with a warning at start-up: a line past its end of life gets no security fixes, and a newer one
 * was not tested.
 */
export function supportedNodeLines(packageJson = path.join(__dirname, '..', 'package.json')): number[] {
  try {
    const engines = (JSON.parse(fs.readFileSync(packageJson, 'utf8')) as { engines?: { node?: string } }).engines?.node ?? '';
    return [...engines.matchAll(/\^(\d+)/g)].map((m) => Number(m[1]));
  } catch {
    return []; // no package.json beside the code (an unusual install): nothing to compare with
  }
}

/** Why the running Node.js is not a tested line, or undefined when it is (or nothing says). */
export function unsupportedNode(version: string, lines: number[]): string | undefined {
  const line = Number(version.split('.')[0]);
  if (lines.length === 0 || lines.includes(line)) return undefined;
  if (line > Math.max(...lines)) return `Node.js ${version} is newer than the release lines this gateway is tested on (${lines.join(', ')})`;
  const why = line < Math.min(...lines) ? 'older than every tested line, so past its end of life: no security fixes' : 'a short-lived line between them, not tested';
  return `Node.js ${version} is not a supported release line (tested: ${lines.join(', ')}): ${why} — README "Quick start" shows how to run a tested line`;
}
