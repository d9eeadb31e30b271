import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { legacyObjectIds, type KeyRecord } from '../../../src/domain/key-repository';
import { MIGRATIONS, SqliteKeyRepository } from '../../../src/store/sqlite-key-repository';
import { keyRepositoryContract } from '../../support/key-repository-contract';

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

/**
 * An operator rolls a deployment back: the previous release (schema 4, no knowledge of object ids,
 * reserved versions or intents) runs on a store this release migrated to schema 5 — it does not
 * refuse a newer schema — and writes keys and rotations its way. Then the upgrade is rolled out
 * again. The statements below are the previous release's own (89dfef6 insertKey and addMaterial).
 */
describe('SqliteKeyRepository after a rollback to the previous release and a new upgrade', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-store-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const created = new Date('2026-11-29T12:00:00Z');
  const key = (keyId: string): KeyRecord => ({ keyId, createdAt: created, description: '', keyUsage: 'ENCRYPT_DECRYPT', keySpec: 'SYMMETRIC_DEFAULT', origin: 'AWS_KMS', state: 'Enabled', currentMaterialVersion: 1 });

  it('adopts the rows the previous release wrote: their objects keep their label ids, and their versions are never reserved again', async () => {
    const file = path.join(dir, 'qkms.db');
    const [upgraded, madeByOld] = ['11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222'];
    let store = new SqliteKeyRepository(file);
    const intent = await store.recordKeyIntent({ keyId: upgraded, objectIds: { kek: 'aa'.repeat(16), mac: 'bb'.repeat(16) }, createdAt: created });
    await store.activateKey(intent, key(upgraded), 'cc'.repeat(32), []);
    await store.close();

    const old = new Database(file);
    const at = created.getTime() / 1000;
    old.prepare(`INSERT INTO keys (key_id, created_at, description, key_usage, key_spec, origin, state, deletion_date, pending_window_days, current_material_version, policy, rotation_period_days, next_rotation_date)
                 VALUES (?, ?, '', 'ENCRYPT_DECRYPT', 'SYMMETRIC_DEFAULT', 'AWS_KMS', 'Enabled', NULL, NULL, 1, NULL, NULL, NULL)`).run(madeByOld, at);
    old.prepare('INSERT INTO key_materials (key_id, version, material_id, created_at) VALUES (?, ?, ?, ?)').run(madeByOld, 1, 'dd'.repeat(32), at);
    old.prepare('INSERT INTO key_materials (key_id, version, material_id, created_at, rotation_type) VALUES (?, ?, ?, ?, ?)').run(upgraded, 2, 'ee'.repeat(32), at, 'ON_DEMAND');
    old.prepare('UPDATE keys SET current_material_version = ? WHERE key_id = ?').run(2, upgraded);
    old.close();

    store = new SqliteKeyRepository(file);
    try {
      const materials = await store.listMaterials();
      assert.deepEqual(
        materials.map((m) => [m.keyId, m.version, m.objects.kek.id]),
        [
          [upgraded, 1, 'aa'.repeat(16)],
          [upgraded, 2, legacyObjectIds(upgraded, 2, 'SYMMETRIC_DEFAULT').kek],
          [madeByOld, 1, legacyObjectIds(madeByOld, 1, 'SYMMETRIC_DEFAULT').kek],
        ].sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
      );
      const next = await store.reserveVersion(upgraded, { rotationType: 'ON_DEMAND', objectIds: { kek: '01'.repeat(16), mac: '02'.repeat(16) }, createdAt: created });
      assert.equal(typeof next !== 'string' && next.version, 3, 'version 2 exists: it is never reserved again');
      const first = await store.reserveVersion(madeByOld, { rotationType: 'ON_DEMAND', objectIds: { kek: '03'.repeat(16), mac: '04'.repeat(16) }, createdAt: created });
      assert.equal(typeof first !== 'string' && first.version, 2);
    } finally {
      await store.close();
    }
  });

  it('migrates a schema-4 store with a key that has no material row (version numbers start after its current one)', async () => {
    const file = path.join(dir, 'qkms.db');
    fs.copyFileSync(path.resolve(__dirname, '../../fixtures/legacy-data-dir/data-dir/qkms.db'), file);
    const old = new Database(file);
    const { key_id: keyId } = old.prepare('SELECT key_id FROM keys ORDER BY position LIMIT 1').get() as { key_id: string };
    old.prepare('DELETE FROM key_materials WHERE key_id = ?').run(keyId);
    old.close();
    const store = new SqliteKeyRepository(file);
    try {
      const key = (await store.getKey(keyId))!;
      const next = await store.reserveVersion(keyId, { rotationType: 'ON_DEMAND', objectIds: { kek: '05'.repeat(16), mac: '06'.repeat(16) }, createdAt: created });
      assert.equal(typeof next !== 'string' && next.version, key.currentMaterialVersion + 1, 'the fixture\'s first key: Enabled, symmetric, at version 3');
    } finally {
      await store.close();
    }
  });

  it('refuses to write a store a newer release has migrated past what this one knows', async () => {
    const file = path.join(dir, 'qkms.db');
    await new SqliteKeyRepository(file).close();
    const db = new Database(file);
    const known = db.pragma('user_version', { simple: true }) as number;
    db.pragma(`user_version = ${known + 1}`);
    db.close();
    assert.throws(() => new SqliteKeyRepository(file), new RegExp(`schema version ${known + 1}`));
  });
});

/**
 * The upgrade to imported key material: SQLite cannot widen the intents' purpose CHECK, so the
 * migration rebuilds material_intents. Intents in flight at the upgrade (a replica of the previous
 * release may still be running) must come through as they were.
 */
describe('SqliteKeyRepository upgraded from schema 8 (before imported key material)', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-store-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const at = new Date('2026-11-29T12:00:00Z');
  const ids = (n: number) => ({ kek: String(n).repeat(32), mac: String(n + 1).repeat(32) });

  it('keeps every intent with its id, owner, purpose and abandonment, keeps the intent id counter and the version uniqueness, and takes the new purposes', async () => {
    const file = path.join(dir, 'qkms.db');
    const old = new Database(file);
    for (const [i, migration] of MIGRATIONS.slice(0, 8).entries()) {
      old.transaction(() => (typeof migration === 'string' ? old.exec(migration) : migration(old, 'us-east-1')))();
      old.pragma(`user_version = ${i + 1}`);
    }
    const [keyId, creating] = ['33333333-3333-4333-8333-333333333333', '44444444-4444-4444-8444-444444444444'];
    const s = at.getTime() / 1000;
    old.prepare(`INSERT INTO keys (key_id, created_at, description, key_usage, key_spec, origin, state, current_material_version, last_version)
                 VALUES (?, ?, '', 'ENCRYPT_DECRYPT', 'SYMMETRIC_DEFAULT', 'AWS_KMS', 'Enabled', 1, 3)`).run(keyId, s);
    old.prepare('INSERT INTO key_materials (key_id, version, material_id, created_at, object_ids) VALUES (?, 1, ?, ?, ?)').run(keyId, 'ab'.repeat(32), s, JSON.stringify(ids(1)));
    const intent = old.prepare('INSERT INTO material_intents (key_id, version, purpose, rotation_type, object_ids, created_at, abandoned_at, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
    intent.run(creating, 1, 'create', null, JSON.stringify(ids(3)), s, null, 'replica-a');
    intent.run(keyId, 2, 'rotate', 'ON_DEMAND', JSON.stringify(ids(5)), s, s, null);
    intent.run(keyId, 3, 'rotate', 'ON_DEMAND', JSON.stringify(ids(7)), s, null, 'replica-b');
    old.prepare('DELETE FROM material_intents WHERE version = 3').run(); // its id, 3, stays used
    old.close();

    const store = new SqliteKeyRepository(file);
    try {
      const intents = await store.listIntents();
      assert.deepEqual(
        intents.map((i) => [i.intentId, i.keyId, i.version, i.purpose, i.rotationType, i.objects.kek.id, i.createdAt, i.owner]),
        [[1, creating, 1, 'create', undefined, ids(3).kek, at, 'replica-a'], [2, keyId, 2, 'rotate', 'ON_DEMAND', ids(5).kek, at, undefined]],
      );
      await assert.rejects(store.activateRotation(intents[1], 'cd'.repeat(32)), /gone or being rolled back/, 'still abandoned');
      assert.equal(await store.abandonIntent(1), true);
      const reimport = await store.reserveImport(keyId, { version: 1, objectIds: ids(8), createdAt: at });
      assert.equal(typeof reimport === 'object' && 'intentId' in reimport && [reimport.intentId, reimport.purpose].join(), '4,import', 'the id after the highest ever used');
      assert.equal(await store.reserveImport(keyId, { version: 1, objectIds: ids(8), createdAt: at }), 'busy', 'UNIQUE (key_id, version) kept');
      assert.deepEqual([(await store.getKey(keyId))!.origin, (await store.getMaterial(keyId, 1))!.imported], ['AWS_KMS', undefined]);
    } finally {
      await store.close();
    }
    const raw = new Database(file);
    try {
      assert.throws(() => raw.prepare("INSERT INTO material_intents (key_id, version, purpose, object_ids, created_at) VALUES ('k', 1, 'bogus', '{}', 0)").run(), /CHECK constraint failed/);
      assert.equal(raw.prepare("INSERT INTO material_intents (key_id, version, purpose, object_ids, created_at) VALUES ('k', 1, 'discard', '{}', 0)").run().changes, 1);
    } finally {
      raw.close();
    }
  });
});

keyRepositoryContract('SQLite', async () => new SqliteKeyRepository(':memory:'));
