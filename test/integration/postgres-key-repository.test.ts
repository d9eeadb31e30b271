import assert from 'node:assert/strict';
import { Client } from 'pg';
import { PostgresKeyRepository } from '../../src/store/postgres-key-repository';
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
});
