import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DataDirLockedError, lockDataDir } from '../../../src/store/data-dir-lock';

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
});
