import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateKeyCommand, DecryptCommand, EncryptCommand, GetPublicKeyCommand, KeyUnavailableException } from '@aws-sdk/client-kms';
import { startChildGateway } from '../support/child-gateway';
import { qkmsJson, runQkms } from '../support/cli';
import { TEST_CREDENTIALS } from '../support/harness';
import { pkcs11Tool, readStore, tokenVsStore, toolObjects } from '../support/token-state';

/**
 * Objects are found by CKA_ID alone: an object with a key's id that QKMS did not make is never
 * guessed between (the key is refused, KeyUnavailableException), and objects no key owns are
 * reported at start-up and reviewed and destroyed with `qkms orphans`.
 */
describe('Token objects by id: ambiguity refused, orphans reviewed and destroyed', function () {
  this.timeout(120000);
  let dir: string;
  const env = () => ({ QKMS_DATA_DIR: path.join(dir, 'data'), QKMS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId, QKMS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey });
  before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-identity-'))));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('refuses the key whose id two objects carry, serves the others, and lists and destroys only the orphans', async () => {
    const dataDir = path.join(dir, 'data');
    let gw = await startChildGateway({ QKMS_DATA_DIR: dataDir });
    const [doubled, fine] = [(await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!, (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!];
    const blobs = await Promise.all([doubled, fine].map(async (KeyId) => (await gw.client.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from(KeyId) }))).CiphertextBlob!));
    await gw.stop();

    // Made outside QKMS: an AES key carrying the id of `doubled`'s KEK, and an object under qkms/ no key owns.
    const kekId = readStore(dataDir, (db) => (JSON.parse((db.prepare('SELECT object_ids FROM key_materials WHERE key_id = ?').get(doubled) as { object_ids: string }).object_ids) as { kek: string }).kek);
    pkcs11Tool(dataDir, '--keygen', '--key-type', 'AES:32', '--label', `qkms/${doubled}/1/kek`, '--id', kekId);
    pkcs11Tool(dataDir, '--keygen', '--key-type', 'AES:32', '--label', 'qkms/not-ours/1/kek', '--id', 'ab'.repeat(16));

    const dry = await qkmsJson(['orphans'], env());
    assert.deepEqual(dry.orphaned.map((o: { label: string }) => o.label), ['qkms/not-ours/1/kek']);
    assert.deepEqual(dry.ambiguous.map((o: { id: string; count: number }) => [o.id, o.count]), [[kekId, 2]]);
    assert.deepEqual(dry.destroyed, []);
    assert.ok(toolObjects(dataDir).some((o) => o.label === 'qkms/not-ours/1/kek'), 'a dry run destroys nothing');

    gw = await startChildGateway({ QKMS_DATA_DIR: dataDir });
    try {
      assert.match(gw.output(), /0 objects missing, 1 orphaned, 1 ambiguous/);
      await assert.rejects(gw.client.send(new DecryptCommand({ CiphertextBlob: blobs[0] })), KeyUnavailableException);
      await assert.rejects(gw.client.send(new EncryptCommand({ KeyId: doubled, Plaintext: Buffer.from('x') })), KeyUnavailableException);
      assert.match(gw.output(), /2 token objects carry the CKA_ID of qkms\/[0-9a-f-]+\/1\/kek: refusing to guess/);
      assert.equal(Buffer.from((await gw.client.send(new DecryptCommand({ CiphertextBlob: blobs[1] }))).Plaintext!).toString(), fine);
      const locked = await runQkms(['orphans'], env());
      assert.equal(locked.code, 3, 'refused beside a running gateway: it holds the data-dir lock');
    } finally {
      await gw.stop();
    }

    const destroyed = await qkmsJson(['orphans', '--destroy'], env());
    assert.deepEqual(destroyed.destroyed, ['qkms/not-ours/1/kek']);
    const left = toolObjects(dataDir).filter((o) => o.label.startsWith('qkms/'));
    assert.ok(!left.some((o) => o.label === 'qkms/not-ours/1/kek'));
    assert.equal(left.filter((o) => o.id === kekId).length, 2, 'an ambiguous id is reported, never destroyed');
  });

  it('qkms orphans --destroy destroys the orphan only, not another application\'s object that happens to carry the same CKA_ID', async () => {
    const dataDir = path.join(dir, 'shared-id');
    const gw = await startChildGateway({ QKMS_DATA_DIR: dataDir });
    await gw.stop();
    // Small ids are common (pkcs11-tool --id 01): an object under qkms/ made by hand, and another application's key.
    pkcs11Tool(dataDir, '--keygen', '--key-type', 'AES:32', '--label', 'qkms/made-by-hand/1/kek', '--id', '01');
    pkcs11Tool(dataDir, '--keygen', '--key-type', 'AES:32', '--label', 'another-application', '--id', '01');
    const envHere = { ...env(), QKMS_DATA_DIR: dataDir };
    const run = await qkmsJson(['orphans', '--destroy'], envHere);
    assert.ok(toolObjects(dataDir).some((o) => o.label === 'another-application'), 'not ours: never destroyed');
    assert.deepEqual(run.sharedId, ['01'], 'the orphan is reported, left for the vendor\'s tool');
  });

  /**
   * A lost response: the token made the object, then the call failed with a session error (a
   * network HSM whose connection broke after it executed the request). Repeating the create would
   * make a second object with the same id; the key would answer until a restart, then be refused
   * (ambiguous) with acknowledged ciphertexts behind it.
   */
  // skip: the first start makes the two internal keys with C_GenerateKey.
  for (const [spec, fn, skip] of [
    [{}, 'C_GenerateKey', 2],
    [{ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }, 'C_GenerateKeyPairAsync', 0],
  ] as const) {
    it(`a create (${fn}) whose response is lost to a session error is not repeated: no id is carried twice`, async () => {
      const dataDir = path.join(dir, `lost-${fn}`);
      const faults = path.join(dir, `faults-${fn}.json`);
      fs.writeFileSync(faults, JSON.stringify([{ function: fn, after: true, ckr: 'CKR_SESSION_HANDLE_INVALID', count: 1, skip }]));
      let gw = await startChildGateway({ QKMS_DATA_DIR: dataDir, QKMS_FAULTS_FILE: faults });
      let keyId: string | undefined;
      try {
        keyId = (await gw.client.send(new CreateKeyCommand(spec)).catch(() => undefined))?.KeyMetadata?.KeyId;
      } finally {
        await gw.stop();
      }
      const state = tokenVsStore(dataDir);
      assert.deepEqual({ duplicates: state.duplicates, orphans: state.orphans, missing: state.missing, intents: state.intents }, { duplicates: [], orphans: [], missing: [], intents: 0 });
      if (keyId) {
        gw = await startChildGateway({ QKMS_DATA_DIR: dataDir });
        try {
          const use = 'KeySpec' in spec ? new GetPublicKeyCommand({ KeyId: keyId }) : new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('x') });
          await gw.client.send(use as EncryptCommand);
        } finally {
          await gw.stop();
        }
      }
    });
  }
});
