import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SqliteKeyRepository } from '../../../src/store/sqlite-key-repository';

const REPOSITORY_MODULE = path.resolve(__dirname, '../../../src/store/sqlite-key-repository.ts');

/** Whether this run can act as another user (root with runuser and a 'nobody' account). */
function canRunAsNobody(): boolean {
  if (process.getuid?.() !== 0) return false;
  return spawnSync('runuser', ['-u', 'nobody', '--', 'true']).status === 0;
}

describe('SqliteKeyRepository opened read-only', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-store-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('tells a user who may read the store but not write the data dir what SQLite needs, instead of "attempt to write a readonly database"', function () {
    // Root ignores file modes, so the reader must be another user.
    if (!canRunAsNobody()) {
      console.log('      skipped: needs root, runuser and a nobody account to read as a user without write access');
      this.skip();
    }
    this.timeout(15000); // the child starts tsx
    const file = path.join(dir, 'qkms.db');
    new SqliteKeyRepository(file).close(); // closed cleanly: no -shm or -wal left
    fs.chmodSync(dir, 0o755);
    fs.chmodSync(file, 0o644);
    const script = `try { new (require(${JSON.stringify(REPOSITORY_MODULE)}).SqliteKeyRepository)(${JSON.stringify(file)}, { isReadOnly: true }); console.log('opened'); } catch (err) { console.log(err.message); }`;
    const out = execFileSync('runuser', ['-u', 'nobody', '--', process.execPath, '--require', require.resolve('tsx/cjs'), '-e', script]).toString();
    assert.match(out, /SQLite must create qkms\.db-shm and -wal in .* this user may not write there: run as a user who may write the data dir/);
    assert.deepEqual(fs.readdirSync(dir), ['qkms.db']);
  });
});
