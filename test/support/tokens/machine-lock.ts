import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const WAIT_MS = 120_000;
const POLL_MS = 250;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * An exclusive lock on a piece of machine state (a lock file holding the owner's pid) for tokens
 * that are not per-process. A lock whose owner died is taken over, so a crashed run blocks nobody.
 * Released by the returned function, or when this process exits.
 */
export async function acquireMachineLock(name: string): Promise<() => void> {
  const file = path.join(os.tmpdir(), `qkms-${name}.lock`);
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(fs.readFileSync(file, 'utf8').trim());
      if (!Number.isInteger(owner) || owner <= 0 || !isAlive(owner)) fs.rmSync(file, { force: true });
      else if (Date.now() > deadline) throw new Error(`${name} is in use by process ${owner} (lock ${file})`);
      else await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }
  const release = (): void => {
    process.off('exit', release);
    if (fs.existsSync(file) && fs.readFileSync(file, 'utf8').trim() === String(process.pid)) fs.rmSync(file, { force: true });
  };
  process.on('exit', release);
  return release;
}
