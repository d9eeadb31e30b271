import assert from 'node:assert/strict';
import { keyIdFromBytes, keyIdToBytes, parseKeyRef } from '../../../src/domain/key-ref';
import { keyArn } from '../../../src/domain/arn';

const ID = '1234abcd-12ab-34cd-56ef-1234567890ab';

describe('KeyId parsing', () => {
  const table: Array<[string, unknown]> = [
    [ID, { kind: 'keyId', keyId: ID }],
    [`mrk-${'a'.repeat(32)}`, { kind: 'keyId', keyId: `mrk-${'a'.repeat(32)}` }],
    [`arn:verenc:111122223333:key/${ID}`, { kind: 'keyArn', keyId: ID, account: '111122223333', region: undefined }],
    [`arn:aws:kms:us-east-1:111122223333:key/${ID}`, { kind: 'keyArn', keyId: ID, account: '111122223333', region: 'us-east-1' }],
    ['alias/my-key', { kind: 'aliasName', aliasName: 'alias/my-key' }],
    ['arn:aws:kms:us-east-1:111122223333:alias/my-key', { kind: 'aliasArn', aliasName: 'alias/my-key', account: '111122223333', region: 'us-east-1' }],
    ['arn:verenc:111122223333:alias/my-key', { kind: 'aliasArn', aliasName: 'alias/my-key', account: '111122223333', region: undefined }],
    ['fake-key-id', { kind: 'invalid', reason: 'keyId' }],
    [ID.toUpperCase(), { kind: 'invalid', reason: 'keyId' }],
    ['alias/bad name', { kind: 'invalid', reason: 'keyId' }],
    [`arn:aws:s3:us-east-1:111122223333:key/${ID}`, { kind: 'invalid', reason: 'arn' }],
    ['arn:verenc:111122223333:key/not-a-uuid', { kind: 'invalid', reason: 'arn' }],
    [`arn:verenc:kms:key/${ID}`, { kind: 'invalid', reason: 'arn' }],
  ];
  for (const [input, expected] of table) {
    it(`parses ${input}`, () => assert.deepEqual(parseKeyRef(input), expected));
  }

  it('converts UUID and mrk- key ids to 16 bytes and back', () => {
    assert.equal(keyIdFromBytes(keyIdToBytes(ID)), ID);
    const mrk = `mrk-${'a'.repeat(32)}`;
    assert.equal(keyIdFromBytes(keyIdToBytes(mrk), true), mrk);
    assert.throws(() => keyIdToBytes(`mrk-${'a'.repeat(31)}`));
    assert.throws(() => keyIdToBytes('alias/x'));
  });

  it("prints the seed's ARN form by default and the AWS form on request", () => {
    assert.equal(keyArn({ accountId: '111122223333', region: 'us-east-1', format: 'verenc' }, ID), `arn:verenc:111122223333:key/${ID}`);
    assert.equal(keyArn({ accountId: '111122223333', region: 'eu-west-1', format: 'aws' }, ID), `arn:aws:kms:eu-west-1:111122223333:key/${ID}`);
  });
});
