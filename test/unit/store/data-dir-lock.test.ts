import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { DataDirLockedError, lockDataDir } from '../../../src/store/data-dir-lock';

const LOCK_MODULE = path.resolve(__dirname, '../../../src/store/data-dir-lock.ts');

/** A child process that takes the lock, says 'locked', and holds it until its stdin closes. */
function holdInChild(dir: string): Promise<ChildProcessWithoutNullStreams> {
  const script = `require(${JSON.stringify(LOCK_MODULE)}).lockDataDir(${JSON.stringify(dir)}, 'child-holder');
process.stdout.write('locked\\n'); process.stdin.resume(); process.stdin.on('end', () => process.exit(0));`;
  const child = spawn(process.execPath, ['--require', 'tsx/cjs', '-e', script]);
  return new Promise((resolve, reject) => {
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.once('data', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`lock child exited ${code}: ${stderr}`)));
  });
}

describe('Data dir lock', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-lock-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('refuses a second holder, naming the first, until it is released', () => {
    const first = lockDataDir(dir, 'first-holder');
    assert.throws(
      () => lockDataDir(dir, 'second'),
      (err: unknown) => err instanceof DataDirLockedError && err.owner?.role === 'first-holder' && err.owner.pid === process.pid && /in use by first-holder/.test(err.message),
    );
    first.release();
    first.release(); // idempotent
    lockDataDir(dir, 'second').release();
  });

  it('stays held when the caller drops the returned object and the garbage collector runs', () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    // The result is deliberately not kept, so this lock stays open (on a deleted dir) for the rest of the run.
    lockDataDir(dir, 'dropped-holder');
    for (let i = 0; i < 5; i++) gc();
    assert.throws(() => lockDataDir(dir, 'second'), DataDirLockedError);
  });

  it('refuses this process while another process holds it, and grants it once that process exits', async function () {
    this.timeout(15000); // the child starts tsx
    const child = await holdInChild(dir);
    try {
      assert.throws(
        () => lockDataDir(dir, 'second'),
        (err: unknown) => err instanceof DataDirLockedError && err.owner?.role === 'child-holder' && err.owner.pid === child.pid,
      );
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.stdin.end();
      await exited;
    }
    lockDataDir(dir, 'second').release();
  });
});
