import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { legacyObjectIds, type KeyRecord, type MaterialIntent } from '../../../src/domain/key-repository';
import { MIGRATIONS, SqliteKeyRepository } from '../../../src/store/sqlite-key-repository';
import { keyRepositoryContract } from '../../support/key-repository-contract';

const REPOSITORY_MODULE = path.resolve(__dirname, '../../../src/store/sqlite-key-repository.ts');

/** Whether this run can act as another user (root with runuser and a 'nobody' account). */
function canRunAsNobody(): boolean {
  if (process.getuid?.() !== 0) return false;
  // nobody must also be able to execute this node (not one installed in root's private home).
  return spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, '-e', '']).status === 0;
}

describe('SqliteKeyRepository opened read-only', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-store-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('tells a user who may read the store but not write the data dir what SQLite needs, instead of "attempt to write a readonly database"', function () {
    // Root ignores file modes, so the reader must be another user.
    if (!canRunAsNobody()) {
      console.log(`      skipped: needs root, runuser and a nobody account that may execute ${process.execPath}, to read as a user without write access`);
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

/**
 * The upgrade to regions rebuilds keys, tags, aliases, grants, key_last_usage, key_materials and
 * import_parameters (SQLite cannot alter constraints). Everything the previous release wrote must
 * come through as the home region's, with its positions and counters, and the constraints must
 * hold afterwards. The release of schema 4 does not refuse the new schema: what it writes lands in
 * the home region.
 */
describe('SqliteKeyRepository upgraded from schema 9 (before regions)', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-store-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const at = new Date('2026-11-29T12:00:00Z');
  const s = at.getTime() / 1000;
  const [a, b, gone] = ['55555555-5555-4555-8555-555555555555', '66666666-6666-4666-8666-666666666666', '77777777-7777-4777-8777-777777777777'];
  const objectIds = JSON.stringify({ kek: 'aa'.repeat(16), mac: 'bb'.repeat(16) });

  /** A store as the release of schema 9 left it, with a deleted key, alias and grant (their positions stay used). */
  function schema9Store(file: string): void {
    const old = new Database(file);
    old.pragma('foreign_keys = ON');
    for (const [i, migration] of MIGRATIONS.slice(0, 9).entries()) {
      old.transaction(() => (typeof migration === 'string' ? old.exec(migration) : migration(old, 'unused')))();
      old.pragma(`user_version = ${i + 1}`);
    }
    const key = old.prepare(`INSERT INTO keys (key_id, created_at, description, key_usage, key_spec, origin, state, current_material_version, last_version, rotation_period_days, next_rotation_date)
                             VALUES (?, ?, 'old', 'ENCRYPT_DECRYPT', 'SYMMETRIC_DEFAULT', 'AWS_KMS', 'Enabled', 1, 2, 90, ?)`);
    for (const keyId of [a, b, gone]) key.run(keyId, s, s);
    const material = old.prepare('INSERT INTO key_materials (key_id, version, material_id, created_at, object_ids) VALUES (?, 1, ?, ?, ?)');
    for (const keyId of [a, b, gone]) material.run(keyId, 'cd'.repeat(32), s, objectIds);
    old.prepare("INSERT INTO tags (key_id, tag_key, tag_value) VALUES (?, 'team', 'x')").run(a);
    const alias = old.prepare('INSERT INTO aliases (alias_name, target_key_id, created_at, last_updated_at) VALUES (?, ?, ?, ?)');
    for (const [name, keyId] of [['alias/first', a], ['alias/dropped', b], ['alias/second', b], ['alias/last', a]]) alias.run(name, keyId, s, s);
    old.prepare("DELETE FROM aliases WHERE alias_name IN ('alias/dropped', 'alias/last')").run();
    const grant = old.prepare(`INSERT INTO grants (grant_id, key_id, grantee_principal, issuing_account, operations, created_at)
                               VALUES (?, ?, 'arn:aws:iam::111122223333:role/app', 'arn:aws:iam::111122223333:root', '["Decrypt"]', ?)`);
    grant.run('g1', a, s);
    grant.run('g2', a, s);
    old.prepare("INSERT INTO grant_tokens (grant_id, token_hash) VALUES ('g1', ?)").run(Buffer.alloc(32, 1));
    old.prepare("DELETE FROM grants WHERE grant_id = 'g2'").run();
    old.prepare("INSERT INTO key_last_usage (key_id, operation, used_at, request_id) VALUES (?, 'Encrypt', ?, 'r1')").run(a, s);
    old.prepare(`INSERT INTO import_parameters (parameters_id, key_id, wrapping_key_spec, wrapping_algorithm, token_hash, objects, created_at, valid_to)
                 VALUES ('p1', ?, 'RSA_2048', 'RSAES_OAEP_SHA_256', ?, '{}', ?, ?)`).run(b, Buffer.alloc(32, 2), s, s + 86400);
    old.prepare("INSERT INTO material_intents (key_id, version, purpose, rotation_type, object_ids, created_at, owner) VALUES (?, 2, 'rotate', 'ON_DEMAND', ?, ?, 'replica-a')").run(a, objectIds, s);
    old.prepare('DELETE FROM keys WHERE key_id = ?').run(gone); // cascades to its material in schema 9
    old.close();
  }

  it('keeps every row as the home region\'s, with its positions and AUTOINCREMENT counters, and the shared rows as they were', async () => {
    const file = path.join(dir, 'qkms.db');
    schema9Store(file);
    const store = new SqliteKeyRepository(file, { region: 'eu-central-1' });
    try {
      assert.deepEqual(await store.listKeys(0, 10), [{ keyId: a, position: 1 }, { keyId: b, position: 2 }]);
      assert.deepEqual(await store.inRegion('us-east-1').listKeys(0, 10), [], 'the home region is the one the store was opened with');
      assert.deepEqual(await store.keyRegions(a), [{ region: 'eu-central-1', state: 'Enabled' }]);
      const read = (await store.getKey(a))!;
      assert.deepEqual([read.description, read.currentMaterialVersion, read.rotation, read.primaryRegion], ['old', 1, { periodDays: 90, nextRotationDate: at }, undefined]);
      assert.deepEqual(await store.keysDueForRotation(at), [a, b]);
      assert.deepEqual(await store.listTags(a), [{ key: 'team', value: 'x' }]);
      assert.deepEqual((await store.listAliases(0, 10)).map((x) => [x.aliasName, x.targetKeyId, x.position]), [['alias/first', a, 1], ['alias/second', b, 3]]);
      assert.deepEqual((await store.listGrants({}, 0, 10)).map((g) => [g.grantId, g.position]), [['g1', 1]]);
      assert.deepEqual(await store.grantTokenHashes('g1'), [Buffer.alloc(32, 1)]);
      assert.deepEqual((await store.getKeyUsage(a)).usage, { keyId: a, region: 'eu-central-1', operation: 'Encrypt', at, requestId: 'r1' });
      assert.deepEqual((await store.listMaterials()).map((m) => [m.keyId, m.version]), [[a, 1], [b, 1]].sort((x, y) => String(x[0]).localeCompare(String(y[0]))));
      assert.deepEqual((await store.listImportParameters()).map((p) => [p.parametersId, p.keyId]), [['p1', b]]);
      assert.deepEqual((await store.listIntents()).map((i) => [i.intentId, i.keyId, i.owner]), [[1, a, 'replica-a']]);

      const c = '88888888-8888-4888-8888-888888888888';
      const intent = await store.recordKeyIntent({ keyId: c, objectIds: { kek: '01'.repeat(16), mac: '02'.repeat(16) }, createdAt: at });
      await store.activateKey(intent, { keyId: c, createdAt: at, description: '', keyUsage: 'ENCRYPT_DECRYPT', keySpec: 'SYMMETRIC_DEFAULT', origin: 'AWS_KMS', state: 'Enabled', currentMaterialVersion: 1 }, 'ef'.repeat(32), []);
      assert.equal((await store.listKeys(2, 10))[0].position, 4, 'the deleted key\'s position 3 is not reused');
      assert.equal(await store.insertAlias({ aliasName: 'alias/new', targetKeyId: c, createdAt: at, lastUpdatedAt: at }, 10), 'created');
      assert.equal((await store.getAlias('alias/new') as { position?: number }).position, 4, 'after the highest position present: the table had no counter before (rowids), from now on it has one');
      await store.insertGrant({ grantId: 'g3', keyId: c, granteePrincipal: 'p', issuingAccount: 'i', operations: ['Encrypt'], createdAt: at }, Buffer.alloc(32, 3), 10);
      assert.deepEqual((await store.listGrants({ keyId: c }, 0, 10)).map((g) => g.position), [3], 'the deleted grant\'s position 2 is not reused');
      assert.equal(reserved(await store.reserveVersion(a, { rotationType: 'ON_DEMAND', objectIds: { kek: '03'.repeat(16), mac: '04'.repeat(16) }, createdAt: at })).version, 3, 'last_version 2 kept');

      assert.equal(await store.transitionState(a, ['Enabled'], { state: 'PendingDeletion', deletionDate: at, pendingWindowDays: 7 }), true);
      assert.equal(await store.beginDeletion(a, at), true);
      await store.deleteKey(a);
      assert.deepEqual([await store.listTags(a), await store.getAlias('alias/first'), await store.getGrant('g1'), (await store.getKeyUsage(a)).usage, await store.listMaterialsOf(a)], [[], undefined, undefined, undefined, []]);
    } finally {
      await store.close();
    }
    const raw = new Database(file);
    try {
      raw.pragma('foreign_keys = ON');
      assert.deepEqual(raw.prepare("SELECT count(*) AS n FROM grant_tokens WHERE grant_id = 'g1'").get(), { n: 0 }, 'cascaded from its grant');
      assert.throws(() => raw.prepare("INSERT INTO tags (key_id, region, tag_key, tag_value) VALUES (?, 'us-east-1', 'k', 'v')").run(b), /FOREIGN KEY constraint failed/, 'a tag needs its region\'s record');
      assert.throws(() => raw.prepare("INSERT INTO aliases (alias_name, region, target_key_id, created_at, last_updated_at) VALUES ('alias/second', 'eu-central-1', ?, 0, 0)").run(b), /UNIQUE constraint failed/);
      assert.deepEqual(raw.pragma('foreign_key_check'), []);
    } finally {
      raw.close();
    }
  });

  it('takes the writes of the release of schema 4 (which does not refuse the new schema) into the home region, and drops the materials of keys it deletes at the next open', async () => {
    const file = path.join(dir, 'qkms.db');
    schema9Store(file);
    await new SqliteKeyRepository(file, { region: 'eu-central-1' }).close();
    // The schema-4 release's own statements (89dfef6 insertKey, addMaterial, createAlias, deleteKey).
    const old = new Database(file);
    old.pragma('foreign_keys = ON');
    const madeByOld = '99999999-9999-4999-8999-999999999999';
    old.prepare(`INSERT INTO keys (key_id, created_at, description, key_usage, key_spec, origin, state, deletion_date, pending_window_days, current_material_version, policy, rotation_period_days, next_rotation_date)
                 VALUES (?, ?, '', 'ENCRYPT_DECRYPT', 'SYMMETRIC_DEFAULT', 'AWS_KMS', 'Enabled', NULL, NULL, 1, NULL, NULL, NULL)`).run(madeByOld, s);
    old.prepare('INSERT INTO key_materials (key_id, version, material_id, created_at) VALUES (?, ?, ?, ?)').run(madeByOld, 1, 'dd'.repeat(32), s);
    old.prepare('INSERT INTO tags (key_id, tag_key, tag_value) VALUES (?, ?, ?)').run(madeByOld, 'by', 'old');
    old.prepare('INSERT OR IGNORE INTO aliases (alias_name, target_key_id, created_at, last_updated_at) VALUES (?, ?, ?, ?)').run('alias/old', madeByOld, s, s);
    old.prepare('DELETE FROM keys WHERE key_id = ?').run(b);
    old.close();

    const store = new SqliteKeyRepository(file, { region: 'eu-central-1' });
    try {
      assert.deepEqual([(await store.getKey(madeByOld))!.state, await store.listTags(madeByOld), await store.aliasTarget('alias/old')], ['Enabled', [{ key: 'by', value: 'old' }], madeByOld]);
      assert.deepEqual((await store.listMaterials()).map((m) => [m.keyId, m.objects.kek.id]), [
        [a, 'aa'.repeat(16)], [madeByOld, legacyObjectIds(madeByOld, 1, 'SYMMETRIC_DEFAULT').kek],
      ].sort((x, y) => String(x[0]).localeCompare(String(y[0]))), 'b\'s material went with it; the old release\'s material adopted');
      assert.equal(await store.aliasTarget('alias/second'), undefined, 'cascaded from b');
    } finally {
      await store.close();
    }
  });
});

function reserved(r: MaterialIntent | string): MaterialIntent {
  assert.notEqual(typeof r, 'string', `refused: ${String(r)}`);
  return r as MaterialIntent;
}
