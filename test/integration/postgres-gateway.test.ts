import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AlreadyExistsException, CreateAliasCommand, CreateKeyCommand, DecryptCommand, DescribeKeyCommand, EncryptCommand, ListAliasesCommand } from '@aws-sdk/client-kms';
import { Client } from 'pg';
import { startChildGateway, type ChildGateway } from '../support/child-gateway';
import { sharedPostgres, skipWithoutPostgres } from '../support/postgres';
import { registerSecret } from '../support/secrets';

describe('A gateway on the PostgreSQL store (QKMS_STORE_URL)', function () {
  this.timeout(60000);
  let dir: string;
  let gw: ChildGateway | undefined;
  before(function () {
    skipWithoutPostgres(this);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-pg-gateway-'));
  });
  after(async () => {
    await gw?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('keeps keys and aliases in PostgreSQL across a restart, and never logs the URL\'s password', async () => {
    const plainUrl = await (await sharedPostgres()).createDatabase('gateway');
    // The test cluster trusts loopback, so any password connects; it must never appear in a log (zz-log-scan).
    const password = 'pg-password-that-must-not-be-logged';
    registerSecret(password);
    const url = plainUrl.replace('postgres@', `postgres:${password}@`);
    const env = { QKMS_DATA_DIR: path.join(dir, 'data'), QKMS_STORE_URL: url };
    gw = await startChildGateway(env);
    const keyId = (await gw.client.send(new CreateKeyCommand({ Description: 'on postgres' }))).KeyMetadata!.KeyId!;
    await gw.client.send(new CreateAliasCommand({ AliasName: 'alias/pg', TargetKeyId: keyId }));
    await assert.rejects(gw.client.send(new CreateAliasCommand({ AliasName: 'alias/pg', TargetKeyId: keyId })), AlreadyExistsException);
    const { CiphertextBlob } = await gw.client.send(new EncryptCommand({ KeyId: 'alias/pg', Plaintext: Buffer.from('kept in postgres') }));
    assert.match(gw.output(), /"message":"key store opened".*"store":"postgres"/);
    assert.match(gw.output(), new RegExp(`postgres://postgres:\\*\\*\\*@127\\.0\\.0\\.1`), 'the start-up summary shows where, without the password');
    assert.equal(await gw.stop(), 0);
    gw = undefined;
    assert.equal(fs.existsSync(path.join(dir, 'data', 'qkms.db')), false, 'no SQLite store was made');

    const db = new Client({ connectionString: plainUrl });
    await db.connect();
    try {
      const { rows } = await db.query<{ key_id: string; description: string }>('SELECT key_id, description FROM keys');
      assert.deepEqual(rows, [{ key_id: keyId, description: 'on postgres' }]);
    } finally {
      await db.end();
    }

    gw = await startChildGateway(env);
    assert.equal((await gw.client.send(new DescribeKeyCommand({ KeyId: 'alias/pg' }))).KeyMetadata!.Description, 'on postgres');
    const { Plaintext } = await gw.client.send(new DecryptCommand({ CiphertextBlob }));
    assert.equal(Buffer.from(Plaintext!).toString(), 'kept in postgres');
    const aliases = (await gw.client.send(new ListAliasesCommand({}))).Aliases!.filter((a) => a.TargetKeyId);
    assert.deepEqual(aliases.map((a) => [a.AliasName, a.TargetKeyId]), [['alias/pg', keyId]]);
    assert.doesNotMatch(gw.output(), /"isNew":true/);
    assert.equal(await gw.stop(), 0);
    gw = undefined;
  });
});
