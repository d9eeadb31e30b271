import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Client } from 'pg';
import type { KeyRecord } from '../../src/domain/key-repository';
import { PostgresKeyRepository } from '../../src/store/postgres-key-repository';
import { MIGRATIONS } from '../../src/store/postgres-migrations';
import { keyRepositoryContract } from '../support/key-repository-contract';
import { sharedPostgres, skipWithoutPostgres } from '../support/postgres';

describe('PostgresKeyRepository', function () {
  before(function () {
    skipWithoutPostgres(this);
  });

  keyRepositoryContract('PostgreSQL', async () => PostgresKeyRepository.open(await (await sharedPostgres()).createDatabase('contract')));

  it('records its schema version in a table, is new only when it created the schema, and refuses a database a later release migrated further', async () => {
    const url = await (await sharedPostgres()).createDatabase('schema');
    const first = await PostgresKeyRepository.open(url);
    assert.equal(first.isNew, true);
    await first.close();
    const again = await PostgresKeyRepository.open(url);
    assert.equal(again.isNew, false);
    await again.close();
    const admin = new Client({ connectionString: url });
    await admin.connect();
    try {
      const { rows } = await admin.query<{ v: number }>('SELECT max(version) AS v FROM qkms_schema');
      await admin.query('INSERT INTO qkms_schema (version) VALUES ($1)', [rows[0].v + 1]);
    } finally {
      await admin.end();
    }
    await assert.rejects(PostgresKeyRepository.open(url), /schema version \d+, newer than this qkms knows/);
  });

  it('opens the view of the region given (us-east-1 by default), whose views share one pool and close together', async () => {
    const url = await (await sharedPostgres()).createDatabase('region');
    const byDefault = await PostgresKeyRepository.open(url);
    assert.equal(byDefault.region, 'us-east-1');
    await byDefault.close();
    const store = await PostgresKeyRepository.open(url, { region: 'eu-west-1', poolSize: 1 });
    assert.equal(store.region, 'eu-west-1');
    assert.equal(store.inRegion('eu-west-1'), store);
    const other = store.inRegion('ap-southeast-2');
    assert.deepEqual(await Promise.all([store.keyRegions('k'), other.keyRegions('k')]), [[], []], 'one connection serves both');
    await other.close();
    await store.close();
    await assert.rejects(store.getKey('k'), /pool/i, 'closing any view closes the store');
  });

  it('records one usage per record from a batch naming it twice: the newer', async () => {
    const store = await PostgresKeyRepository.open(await (await sharedPostgres()).createDatabase('usage_batch'));
    try {
      const keyId = crypto.randomUUID();
      const at = new Date('2026-11-29T12:00:00.123Z');
      const key: KeyRecord = { keyId, createdAt: at, description: '', keyUsage: 'ENCRYPT_DECRYPT', keySpec: 'SYMMETRIC_DEFAULT', origin: 'AWS_KMS', state: 'Enabled', currentMaterialVersion: 1 };
      await store.activateKey(await store.recordKeyIntent({ keyId, objectIds: { kek: '01'.repeat(16), mac: '02'.repeat(16) }, createdAt: at }), key, '03'.repeat(32), []);
      const use = (ms: number, requestId: string) => ({ keyId, region: store.region, operation: 'Encrypt', at: new Date(at.getTime() + ms), requestId });
      await store.recordKeyUsage([use(5, 'newer'), use(1, 'older')]);
      assert.equal((await store.getKeyUsage(keyId)).usage?.requestId, 'newer');
      await store.recordKeyUsage([use(2, 'older still'), use(9, 'newest')]);
      assert.equal((await store.getKeyUsage(keyId)).usage?.requestId, 'newest');
    } finally {
      await store.close();
    }
  });

  it('upgrades a schema-5 database (before regions): its rows belong to the home region, and a previous release\'s insert lands there too', async () => {
    const url = await (await sharedPostgres()).createDatabase('upgrade_regions');
    const at = new Date('2026-11-29T12:00:00.123Z');
    const [keyId, grantId] = ['66666666-6666-4666-8666-666666666666', 'ab'.repeat(32)];
    const admin = new Client({ connectionString: url });
    await admin.connect();
    try {
      await admin.query('CREATE TABLE qkms_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
      for (const [i, migration] of MIGRATIONS.slice(0, 5).entries()) {
        await admin.query(migration);
        await admin.query('INSERT INTO qkms_schema (version) VALUES ($1)', [i + 1]);
      }
      await admin.query(`INSERT INTO keys (key_id, created_at, description, key_usage, key_spec, origin, state, current_material_version, last_version)
                         VALUES ($1, $2, 'old', 'ENCRYPT_DECRYPT', 'SYMMETRIC_DEFAULT', 'AWS_KMS', 'Enabled', 1, 1)`, [keyId, at]);
      await admin.query('INSERT INTO key_materials (key_id, version, material_id, created_at, object_ids) VALUES ($1, 1, $2, $3, $4)', [keyId, 'cd'.repeat(32), at, JSON.stringify({ kek: '01'.repeat(16), mac: '02'.repeat(16) })]);
      await admin.query("INSERT INTO tags (key_id, tag_key, tag_value) VALUES ($1, 'team', 'a')", [keyId]);
      await admin.query("INSERT INTO aliases (alias_name, target_key_id, created_at, last_updated_at) VALUES ('alias/old', $1, $2, $2)", [keyId, at]);
      await admin.query(`INSERT INTO grants (grant_id, key_id, grantee_principal, issuing_account, operations, created_at)
                         VALUES ($1, $2, 'arn:aws:iam::111122223333:role/app', 'arn:aws:iam::111122223333:root', '["Decrypt"]', $3)`, [grantId, keyId, at]);
      await admin.query("INSERT INTO key_last_usage (key_id, operation, used_at, request_id) VALUES ($1, 'Encrypt', $2, 'r-old')", [keyId, at]);
      await admin.query(`INSERT INTO import_parameters (parameters_id, key_id, wrapping_key_spec, wrapping_algorithm, token_hash, objects, created_at, valid_to)
                         VALUES ('p-old', $1, 'RSA_2048', 'RSAES_OAEP_SHA_256', '\\x00', '{}', $2, $2)`, [keyId, at]);
    } finally {
      await admin.end();
    }
    const store = await PostgresKeyRepository.open(url, { region: 'eu-west-1' });
    try {
      assert.equal(store.isNew, false);
      const key = (await store.getKey(keyId))!;
      assert.deepEqual([key.description, key.primaryRegion, await store.listTags(keyId), await store.aliasTarget('alias/old'), (await store.getGrant(grantId))?.keyId], ['old', undefined, [{ key: 'team', value: 'a' }], keyId, keyId]);
      assert.deepEqual((await store.getKeyUsage(keyId)).usage, { keyId, region: 'eu-west-1', operation: 'Encrypt', at, requestId: 'r-old' });
      assert.deepEqual(await store.keyRegions(keyId), [{ region: 'eu-west-1', state: 'Enabled' }]);
      const elsewhere = store.inRegion('us-east-1');
      assert.deepEqual([await elsewhere.getKey(keyId), await elsewhere.listTags(keyId), await elsewhere.aliasTarget('alias/old'), await elsewhere.getGrant(grantId)], [undefined, [], undefined, undefined]);
      assert.equal((await elsewhere.getMaterial(keyId, 1))!.materialId, 'cd'.repeat(32), 'materials are shared');

      // What a replica of the previous release, still running, writes: no region.
      const admin2 = new Client({ connectionString: url });
      await admin2.connect();
      const oldReleaseKey = '77777777-7777-4777-8777-777777777777';
      try {
        await admin2.query(`INSERT INTO keys (key_id, created_at, description, key_usage, key_spec, origin, state, current_material_version, last_version)
                            VALUES ($1, $2, 'written by the previous release', 'ENCRYPT_DECRYPT', 'SYMMETRIC_DEFAULT', 'AWS_KMS', 'Enabled', 1, 1)`, [oldReleaseKey, at]);
        await admin2.query("INSERT INTO tags (key_id, tag_key, tag_value) VALUES ($1, 'from', 'old')", [oldReleaseKey]);
      } finally {
        await admin2.end();
      }
      assert.deepEqual([(await store.getKey(oldReleaseKey))?.description, await store.listTags(oldReleaseKey)], ['written by the previous release', [{ key: 'from', value: 'old' }]]);

      assert.equal(await store.transitionState(keyId, ['Enabled'], { state: 'PendingDeletion', deletionDate: at, pendingWindowDays: 7 }), true);
      assert.equal(await store.beginDeletion(keyId, at), true);
      await store.deleteKey(keyId);
      assert.deepEqual([await store.listMaterialsOf(keyId), await store.listImportParameters(keyId), await store.aliasTarget('alias/old')], [[], [], undefined], 'no longer by cascade from the key');
    } finally {
      await store.close();
    }
  });

  it('upgrades a schema-4 database (before imported key material) keeping its intents, and takes the new purposes', async () => {
    const url = await (await sharedPostgres()).createDatabase('upgrade');
    const at = new Date('2026-11-29T12:00:00.123Z');
    const keyId = '55555555-5555-4555-8555-555555555555';
    const admin = new Client({ connectionString: url });
    await admin.connect();
    try {
      await admin.query('CREATE TABLE qkms_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
      for (const [i, migration] of MIGRATIONS.slice(0, 4).entries()) {
        await admin.query(migration);
        await admin.query('INSERT INTO qkms_schema (version) VALUES ($1)', [i + 1]);
      }
      await admin.query(`INSERT INTO keys (key_id, created_at, description, key_usage, key_spec, origin, state, current_material_version, last_version)
                         VALUES ($1, $2, '', 'ENCRYPT_DECRYPT', 'SYMMETRIC_DEFAULT', 'AWS_KMS', 'Enabled', 1, 2)`, [keyId, at]);
      await admin.query('INSERT INTO key_materials (key_id, version, material_id, created_at, object_ids) VALUES ($1, 1, $2, $3, $4)', [keyId, 'ab'.repeat(32), at, JSON.stringify({ kek: '01'.repeat(16), mac: '02'.repeat(16) })]);
      await admin.query(`INSERT INTO material_intents (key_id, version, purpose, rotation_type, object_ids, created_at, abandoned_at, owner)
                         VALUES ($1, 2, 'rotate', 'ON_DEMAND', $2, $3, $3, 'replica-a')`, [keyId, JSON.stringify({ kek: '03'.repeat(16), mac: '04'.repeat(16) }), at]);
    } finally {
      await admin.end();
    }
    const store = await PostgresKeyRepository.open(url);
    try {
      const [intent] = await store.listIntents();
      assert.deepEqual([intent.keyId, intent.version, intent.purpose, intent.rotationType, intent.objects.kek.id, intent.createdAt, intent.owner], [keyId, 2, 'rotate', 'ON_DEMAND', '03'.repeat(16), at, 'replica-a']);
      await assert.rejects(store.activateRotation(intent, 'cd'.repeat(32)), /gone or being rolled back/, 'still abandoned');
      const reimport = await store.reserveImport(keyId, { version: 1, objectIds: { kek: '05'.repeat(16), mac: '06'.repeat(16) }, createdAt: at });
      assert.equal(typeof reimport === 'object' && 'intentId' in reimport && reimport.purpose, 'import');
      assert.deepEqual([(await store.getKey(keyId))!.origin, (await store.getMaterial(keyId, 1))!.imported], ['AWS_KMS', undefined]);
    } finally {
      await store.close();
    }
  });
});
