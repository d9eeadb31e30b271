import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { findSoftHsmModule } from '../../src/hsm/pkcs11/embedded-token';

/** One object as pkcs11-tool (OpenSC) prints it: an independent, fresh reading of the token. */
export interface ToolObject {
  kind: string;
  label: string;
  /** CKA_ID as lowercase hex. */
  id: string;
  access: Set<string>;
  allowed?: string[];
}

/** pkcs11-tool on a data dir's embedded SoftHSM2 token, logged in with its PIN. */
export function pkcs11Tool(dataDir: string, ...args: string[]): string {
  const pin = fs.readFileSync(path.join(dataDir, 'pin'), 'utf8');
  return execFileSync('pkcs11-tool', ['--module', findSoftHsmModule(), '--token-label', 'qkms', '--login', '--pin', pin, ...args], {
    env: { ...process.env, SOFTHSM2_CONF: path.join(dataDir, 'softhsm2.conf') },
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 256 * 1024 * 1024, // a listing of thousands of objects (the crash soak) is several MB
  }).toString();
}

export function toolObjects(dataDir: string): ToolObject[] {
  const blocks = pkcs11Tool(dataDir, '--list-objects').split(/^(?=(?:Secret|Public|Private) Key Object)/m).filter((b) => / Key Object/.test(b));
  return blocks.map((b) => ({
    kind: /^(\w+) Key Object/.exec(b)![1],
    label: /^\s+label:\s+(.*)$/m.exec(b)![1].trim(),
    id: (/^\s+ID:\s+([0-9a-f]*)$/m.exec(b)?.[1] ?? '').trim(),
    access: new Set((/^\s+Access:\s+(.*)$/m.exec(b)?.[1] ?? '').split(',').map((s) => s.trim()).filter(Boolean)),
    allowed: /^\s+Allowed mechanisms:\s+(.*)$/m.exec(b)?.[1].split(',').map((m) => `CKM_${m.trim().replace(/-/g, '_')}`),
  }));
}

/** The store of a stopped (or running: WAL readers see its commits) gateway, read-only. */
export function readStore<T>(dataDir: string, read: (db: Database.Database) => T): T {
  const db = new Database(path.join(dataDir, 'qkms.db'), { readonly: true, fileMustExist: true });
  try {
    return read(db);
  } finally {
    db.close();
  }
}

export interface TokenVsStore {
  /** qkms/ objects on the token whose id no material row owns. */
  orphans: string[];
  /** Ids a material row owns that no token object carries. */
  missing: string[];
  /** Ids two or more token objects carry. */
  duplicates: string[];
  /** Intents left in the store (a change not finished nor rolled back). */
  intents: number;
  /** Material rows and key rows. */
  materials: number;
  keys: number;
}

/**
 * The token as pkcs11-tool reads it afresh against the store as SQLite reads it: what "no orphan,
 * nothing lost, nothing ambiguous" means after a crash and a restart.
 */
export function tokenVsStore(dataDir: string): TokenVsStore {
  const objects = toolObjects(dataDir).filter((o) => o.label.startsWith('qkms/'));
  const { owned, wrapping, intents, keys } = readStore(dataDir, (db) => ({
    owned: (db.prepare('SELECT object_ids FROM key_materials').all() as Array<{ object_ids: string }>).flatMap((r) => Object.values(JSON.parse(r.object_ids) as Record<string, string>)),
    // GetParametersForImport's wrapping pairs: owned, but not missing when a crash came before they were made.
    wrapping: (db.prepare('SELECT objects FROM import_parameters').all() as Array<{ objects: string }>).flatMap((r) => Object.values(JSON.parse(r.objects) as Record<string, { id: string }>).map((ref) => ref.id)),
    intents: (db.prepare('SELECT count(*) AS n FROM material_intents').get() as { n: number }).n,
    keys: (db.prepare('SELECT count(*) AS n FROM keys').get() as { n: number }).n,
  }));
  const ownedSet = new Set([...owned, ...wrapping]);
  const seen = new Map<string, number>();
  for (const o of objects) seen.set(o.id, (seen.get(o.id) ?? 0) + 1);
  return {
    orphans: objects.filter((o) => !ownedSet.has(o.id)).map((o) => `${o.label} (${o.id})`),
    missing: owned.filter((id) => !seen.has(id)),
    duplicates: [...seen].filter(([, n]) => n > 1).map(([id]) => id),
    intents,
    materials: owned.length,
    keys,
  };
}
