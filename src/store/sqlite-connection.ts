import path from 'node:path';
import Database from 'better-sqlite3';
import type { KeyRepository } from '../domain/key-repository';
import { MIGRATIONS, adoptRowsOfEarlierReleases, migrate } from './sqlite-migrations';

/** How long a write waits for another process's write lock before SQLITE_BUSY. */
export const BUSY_TIMEOUT_MS = 5000;

/**
 * One open SQLite store, shared by every region's view of it (SqliteKeyRepository.inRegion): the
 * connection, its prepared statements and the views themselves.
 */
export class SqliteConnection {
  readonly db: Database.Database;

  /** Prepared statements by SQL text: preparing costs more than running a point query. */
  private readonly statements = new Map<string, Database.Statement>();

  /** The views by region, made once each: a view is cheap, but callers may ask per request. */
  readonly views = new Map<string, KeyRepository>();

  /**
   * `home`: the region rows of releases before regions belong to (QKMS_REGION).
   * `isReadOnly`: for readers beside a running gateway (the compliance report); never migrates.
   */
  constructor(file: string, readonly home: string, readonly ownerId: string, isReadOnly: boolean) {
    this.db = new Database(file, { readonly: isReadOnly, fileMustExist: isReadOnly });
    this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    if (isReadOnly) {
      const version = readUserVersion(this.db, file);
      if (version !== MIGRATIONS.length) throw new Error(`the key store ${file} has schema version ${version}; this qkms reads version ${MIGRATIONS.length}`);
      return;
    }
    this.db.pragma('journal_mode = WAL'); // readers never block the writer; several processes may share the file
    this.db.pragma('synchronous = FULL'); // a key's metadata must survive a power cut once CreateKey answered
    this.db.pragma('foreign_keys = ON');
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      this.db.close();
      throw new Error(`the key store ${file} has schema version ${version}, newer than this qkms knows (${MIGRATIONS.length}): a later release wrote it; run that release`);
    }
    migrate(this.db, home);
    this.db.transaction(() => adoptRowsOfEarlierReleases(this.db))();
  }

  sql(text: string): Database.Statement {
    let statement = this.statements.get(text);
    if (!statement) {
      statement = this.db.prepare(text);
      this.statements.set(text, statement);
    }
    return statement;
  }
}

/**
 * user_version through a read-only connection. A WAL-mode store needs its qkms.db-shm and
 * qkms.db-wal files even to be read; SQLite creates them when missing (and leaves them; the gateway
 * reuses them). This better-sqlite3 build has no URI filenames, so `immutable=1` is not available
 * as a fallback: a reader that cannot create them gets a message that says what to do.
 */
function readUserVersion(db: Database.Database, file: string): number {
  try {
    return db.pragma('user_version', { simple: true }) as number;
  } catch (err) {
    if ((err as { code?: string }).code !== 'SQLITE_READONLY_DIRECTORY') throw err;
    db.close();
    throw new Error(
      `SQLite must create ${path.basename(file)}-shm and -wal in ${path.dirname(file)} to read the store (WAL mode), and this user may not write there: ` +
        'run as a user who may write the data dir (nothing in the store is changed), or while the gateway runs (the files exist then, and read access to them is enough)',
      { cause: err },
    );
  }
}
