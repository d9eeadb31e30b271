import { spawn, type ChildProcessByStdio } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { recordLog } from './secrets';

const ROOT = path.resolve(__dirname, '../..');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The AWS configuration a test starts from: none. No AWS_* variable of the test process leaks in,
 * the shared config and credentials files are paths that do not exist, and instance metadata is
 * off (the default chain would otherwise wait for it). A test sets what it needs on top.
 */
const NO_AWS_CONFIG = {
  AWS_CONFIG_FILE: path.join(os.tmpdir(), 'qkms-test-no-aws-config'),
  AWS_SHARED_CREDENTIALS_FILE: path.join(os.tmpdir(), 'qkms-test-no-aws-credentials'),
  AWS_EC2_METADATA_DISABLED: 'true',
};

/** The test process's environment without QKMS_*, SOFTHSM2_CONF and AWS_*, then `env`. */
export function cliEnv(env: Record<string, string>): Record<string, string> {
  const clean = Object.entries(process.env).filter(([k]) => !k.startsWith('QKMS_') && !k.startsWith('AWS_') && k !== 'SOFTHSM2_CONF');
  return { ...(Object.fromEntries(clean) as Record<string, string>), ...NO_AWS_CONFIG, ...env };
}

/**
 * `qkms …` as a real child process through the installed command, bin/qkms.js (the compiled
 * dist/ when it is current, else src/ through tsx), with only the given QKMS_* and AWS_* settings:
 * nothing leaks in from the test process's environment. Its output joins the suite's secret scan.
 */
export function runQkms(args: string[], env: Record<string, string> = {}, cwd = ROOT): Promise<CliRun> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/qkms.js'), ...args], {
    cwd,
    env: cliEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return collect(child);
}

/** Output and exit code of a CLI child process, its output recorded for the secret scan. */
export function collect(child: ChildProcessByStdio<null, Readable, Readable>): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      recordLog(stdout + stderr);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs and expects exit 0; the parsed --json output. */
export async function qkmsJson<T = any>(args: string[], env: Record<string, string> = {}): Promise<T> {
  const run = await runQkms(['--json', ...args], env);
  if (run.code !== 0) throw new Error(`qkms ${args.join(' ')} exited ${run.code}: ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}

/** No stack trace reached the operator: node prints frames as "    at fn (file:line)". */
export function hasStackTrace(text: string): boolean {
  return /^\s+at .+[:(]/m.test(text);
}
