import assert from 'node:assert/strict';
import type { KeyRecord } from '../../src/domain/key-repository';
import { changedFields, seedChanges } from '../../src/seed-changes';

const KeyId = '1234abcd-12ab-34cd-56ef-1234567890ab';
const key = {
  keyId: KeyId,
  description: 'as the operator left it',
  keySpec: 'SYMMETRIC_DEFAULT',
  keyUsage: 'ENCRYPT_DECRYPT',
  rotation: { periodDays: 365, nextRotationDate: new Date(0) },
} as KeyRecord;
const tags = [{ key: 'team', value: 'payments' }, { key: 'cost', value: '7' }];

describe('seed file against an existing key', () => {
  it('compares nothing the entry leaves out', () => {
    assert.deepEqual(seedChanges(key, tags, {}), []);
    assert.deepEqual(seedChanges({ ...key, rotation: undefined }, [], {}), []);
  });

  it('finds nothing when the key already is what the entry says', () => {
    assert.deepEqual(seedChanges(key, tags, { description: key.description, tags: [...tags].reverse(), rotationPeriodInDays: 365 }), []);
  });

  it('makes each difference the request a client would send: untag before tag, the tag set as a whole', () => {
    const changes = seedChanges(key, tags, { description: '', tags: [{ key: 'team', value: 'core' }, { key: 'new', value: '' }], rotationPeriodInDays: 90 });
    assert.deepEqual(changes, [
      { field: 'description', operation: 'UpdateKeyDescription', input: { KeyId, Description: '' } },
      { field: 'tags', operation: 'UntagResource', input: { KeyId, TagKeys: ['cost'] } },
      { field: 'tags', operation: 'TagResource', input: { KeyId, Tags: [{ TagKey: 'team', TagValue: 'core' }, { TagKey: 'new', TagValue: '' }] } },
      { field: 'rotation', operation: 'EnableKeyRotation', input: { KeyId, RotationPeriodInDays: 90 } },
    ]);
    assert.deepEqual(changedFields(changes), ['description', 'tags', 'rotation']);
  });

  it('enables rotation that an operator turned off, and an empty tag set removes every tag', () => {
    assert.deepEqual(seedChanges({ ...key, rotation: undefined }, tags, { tags: [], rotationPeriodInDays: 365 }).map((c) => [c.operation, c.input]), [
      ['UntagResource', { KeyId, TagKeys: ['team', 'cost'] }],
      ['EnableKeyRotation', { KeyId, RotationPeriodInDays: 365 }],
    ]);
  });
});
