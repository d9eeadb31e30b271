import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readSeedFile, SeedFileError } from '../../src/seed';

const ID = '1234abcd-12ab-34cd-56ef-1234567890ab';

describe('seed file parsing and checks', () => {
  let dir: string;
  const write = (name: string, text: string) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    return file;
  };
  before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-seedfile-'))));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reads JSON and YAML to the same entries, with spec and usage filled in and no description the file does not give', () => {
    const fromJson = readSeedFile(write('a.json', JSON.stringify({ keys: [{ keyId: ID, rotationPeriodInDays: 90, tags: { n: '7' } }] })));
    const fromYaml = readSeedFile(write('a.yaml', `keys:\n  - keyId: ${ID}\n    rotationPeriodInDays: 90\n    tags: { n: 7 }\n`));
    assert.deepEqual(fromJson, fromYaml);
    assert.deepEqual(fromYaml, [{ keyId: ID, keySpec: 'SYMMETRIC_DEFAULT', keyUsage: 'ENCRYPT_DECRYPT', aliases: [], tags: [{ key: 'n', value: '7' }], rotationPeriodInDays: 90 }]);
  });

  for (const [what, text, message] of [
    ['an asymmetric key without keyUsage', `keys:\n  - keyId: ${ID}\n    keySpec: ECC_NIST_P256\n`, /You must specify a KeyUsage value/],
    ['a usage the spec does not have', `keys:\n  - keyId: ${ID}\n    keySpec: HMAC_256\n    keyUsage: ENCRYPT_DECRYPT\n`, /not compatible with KeySpec HMAC_256/],
    ['rotation of an HMAC key', `keys:\n  - keyId: ${ID}\n    keySpec: HMAC_256\n    keyUsage: GENERATE_VERIFY_MAC\n    rotationPeriodInDays: 365\n`, /not valid for key rotation/],
    ['a rotation period out of range', `keys:\n  - keyId: ${ID}\n    rotationPeriodInDays: 30\n`, /rotationPeriodInDays" must be greater than or equal to 90/],
    ['an alias without the prefix', `keys:\n  - keyId: ${ID}\n    aliases: [ci]\n`, /Alias must start with the prefix "alias\/"/],
    ['a reserved alias', `keys:\n  - keyId: ${ID}\n    aliases: [alias/aws/x]\n`, /reserved for AWS managed keys/],
    ['one alias on two keys', `keys:\n  - keyId: ${ID}\n    aliases: [alias/x]\n  - keyId: 2234abcd-12ab-34cd-56ef-1234567890ab\n    aliases: [alias/x]\n`, /alias alias\/x is also given to key/],
    ['a reserved tag', `keys:\n  - keyId: ${ID}\n    tags: { "aws:x": y }\n`, /Tags beginning with aws: are reserved/],
    ['a key id that is not one', 'keys:\n  - keyId: not-a-key-id\n', /keyId" contains an invalid value/],
    ['the same key twice', `keys:\n  - keyId: ${ID}\n  - keyId: ${ID}\n`, /contains a duplicate value/],
    ['an unknown field', `keys:\n  - keyId: ${ID}\n    policy: x\n`, /"keys\[0\].policy" is not allowed/],
    ['broken YAML', 'keys: [\n', /seed file .*: /],
    ['a null description (JSON)', JSON.stringify({ keys: [{ keyId: ID, description: null }] }), /"keys\[0\].description" must be a string/],
    ['an empty tag value left out (YAML)', `keys:\n  - keyId: ${ID}\n    tags:\n      team:\n`, /"keys\[0\].tags.team" must be a string/],
    ['more aliases than a key may have', `keys:\n  - keyId: ${ID}\n    aliases: [${Array.from({ length: 51 }, (_, i) => `alias/a${i}`).join(', ')}]\n`, /"keys\[0\].aliases" must contain less than or equal to 50 items/],
    ['an alias CreateAlias would refuse', `keys:\n  - keyId: ${ID}\n    aliases: ["alias/ci data"]\n`, /fails to match the required pattern/],
    ['no keys list', 'other: 1\n', /"keys" is required/],
  ] as const) {
    it(`refuses ${what}`, () => {
      assert.throws(() => readSeedFile(write('bad.yaml', text)), (err: Error) => err instanceof SeedFileError && message.test(err.message));
    });
  }
});
