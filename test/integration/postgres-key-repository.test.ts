import assert from 'node:assert/strict';
import { Client } from 'pg';
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
