import { spawn } from 'node:child_process';
import path from 'node:path';
import { recordLog } from './secrets';

const ROOT = path.resolve(__dirname, '../..');

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `qkms …` as a real child process (src/cli/qkms.ts through tsx, as `npm start` runs main.ts),
 * with only the given QKMS_* settings: nothing leaks in from the test process's environment.
 * Its output joins the suite's secret scan.
 */
export function runQkms(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('QKMS_') && k !== 'SOFTHSM2_CONF'));
  const child = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), path.join(ROOT, 'src/cli/qkms.ts'), ...args], {
    cwd: ROOT,
    env: { ...clean, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
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
