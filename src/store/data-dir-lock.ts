import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';

/** Who holds the lock: written beside it for the refusal message only, never trusted for the lock itself. */
export interface LockOwner {
  pid: number;
  host: string;
  role: string;
  since: string;
}

export class DataDirLockedError extends Error {
  constructor(
    readonly dataDir: string,
    readonly owner: LockOwner | undefined,
  ) {
    const who = owner ? `${owner.role} (pid ${owner.pid} on ${owner.host}, since ${owner.since})` : 'another process';
    super(`the data directory ${dataDir} is in use by ${who}: only one writer may use it at a time (stop it, or talk to it with --endpoint)`);
  }
}

export interface DataDirLock {
  release(): void;
}

const LOCK_FILE = 'qkms.lock';

/**
 * The open lock databases. better-sqlite3 closes a Database when it is garbage-collected, which
 * would drop the lock silently once a caller stops referencing the returned object; this set keeps
 * each one alive until release().
 */
const heldLocks = new Set<Database.Database>();
const OWNER_FILE = 'qkms.lock.owner.json';

/**
 * The single-writer lock of a data directory, taken by the gateway and by every direct-mode CLI
 * command that writes (the audit trail is a hash chain with one writer; the key store and the
 * token objects must not change behind a running gateway's caches).
 *
 * It is an SQLite exclusive transaction on `qkms.lock`, held for the life of the process: SQLite
 * takes a POSIX fcntl lock, which the kernel drops when the process dies, so a crash never leaves
 * a stale lock (an O_EXCL lock file would, and a PID check is wrong across containers and after
 * PID reuse). better-sqlite3 is already a dependency, so no lock library is added. Not for NFS,
 * where fcntl locks are unreliable — as for the SQLite store itself.
 */
export function lockDataDir(dataDir: string, role: string): DataDirLock {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const lock = exclusiveFileLock(path.join(dataDir, LOCK_FILE), 0);
  if (!lock) throw new DataDirLockedError(dataDir, readOwner(dataDir));
  const owner: LockOwner = { pid: process.pid, host: os.hostname(), role, since: new Date().toISOString() };
  fs.writeFileSync(path.join(dataDir, OWNER_FILE), JSON.stringify(owner), { mode: 0o600 });
  let isHeld = true;
  return {
    release() {
      if (!isHeld) return;
      isHeld = false;
      fs.rmSync(path.join(dataDir, OWNER_FILE), { force: true });
      lock.release();
    },
  };
}

/**
 * An exclusive lock on `file` across processes (see lockDataDir for why SQLite), waiting up to
 * `waitMs` for its holder; undefined when another process still holds it then. Any other failure
 * (permissions, a missing directory) is thrown as it is.
 */
export function exclusiveFileLock(file: string, waitMs: number): DataDirLock | undefined {
  const db = new Database(file, { timeout: waitMs });
  try {
    // Rollback journal (not WAL): BEGIN EXCLUSIVE then holds an exclusive lock on the file itself.
    db.pragma('journal_mode = DELETE');
    db.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    db.close();
    if (isBusy(err)) return undefined;
    throw err;
  }
  // better-sqlite3 closes a Database that is garbage-collected: this reference keeps the lock.
  heldLocks.add(db);
  return {
    release() {
      if (!heldLocks.delete(db)) return;
      db.close(); // closing rolls the transaction back and drops the lock
    },
  };
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: string } | undefined)?.code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED';
}

function readOwner(dataDir: string): LockOwner | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(dataDir, OWNER_FILE), 'utf8')) as LockOwner;
  } catch {
    return undefined;
  }
}
