import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  DecryptCommand,
  DescribeKeyCommand,
  EncryptCommand,
  GetPublicKeyCommand,
  ListKeyRotationsCommand,
  RotateKeyOnDemandCommand,
  VerifyCommand,
  VerifyMacCommand,
} from '@aws-sdk/client-kms';
import { startChildGateway, type ChildGateway } from '../support/child-gateway';
import { runQkms } from '../support/cli';
import { readStore, tokenVsStore } from '../support/token-state';

const FIXTURE = path.resolve(__dirname, '../fixtures/legacy-data-dir');

interface Expected {
  symmetric: { keyId: string; alias: string; ciphertexts: Array<{ version: number; blob: string; plaintext: string; context: Record<string, string> }> };
  hmac: { keyId: string; message: string; mac: string };
  ecc: { keyId: string; message: string; signature: string; publicKey: string };
  pendingDeletion: { keyId: string };
}

/**
 * An upgrade: today's gateway on a data dir the previous release wrote (test/fixtures/legacy-data-dir).
 * Store migration 5 records the objects' existing ids (their labels' bytes); nothing on the token
 * changes, every answer the old gateway gave still verifies, and new material gets random ids.
 */
describe('A data dir written by the previous release', function () {
  this.timeout(60000);
  let dir: string;
  let gw: ChildGateway;
  const expected = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'expected.json'), 'utf8')) as Expected;
  const b64 = (s: string) => Buffer.from(s, 'base64');

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-legacy-'));
    fs.cpSync(path.join(FIXTURE, 'data-dir'), path.join(dir, 'data'), { recursive: true });
    // The embedded token's configuration names its directory; the copy lives elsewhere.
    fs.writeFileSync(path.join(dir, 'data', 'softhsm2.conf'), `directories.tokendir = ${path.join(dir, 'data', 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
    gw = await startChildGateway({ QKMS_DATA_DIR: path.join(dir, 'data') });
  });
  after(async () => {
    await gw?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('starts with every object owned, none missing or ambiguous', () => {
    assert.match(gw.output(), /0 unfinished key-material changes rolled back, 0 objects missing, 0 orphaned, 0 ambiguous/);
    assert.equal(readStore(path.join(dir, 'data'), (db) => (db.prepare('SELECT count(*) AS n FROM key_materials WHERE object_ids IS NULL').get() as { n: number }).n), 0, 'migration 5 recorded every version\'s object ids');
  });

  it('decrypts every ciphertext and data key of all three material versions, by alias too', async () => {
    for (const c of expected.symmetric.ciphertexts) {
      const out = await gw.client.send(new DecryptCommand({ CiphertextBlob: b64(c.blob), EncryptionContext: c.context }));
      assert.deepEqual(Buffer.from(out.Plaintext!), b64(c.plaintext), `version ${c.version}`);
    }
    const [first] = expected.symmetric.ciphertexts;
    const out = await gw.client.send(new DecryptCommand({ CiphertextBlob: b64(first.blob), EncryptionContext: first.context, KeyId: expected.symmetric.alias }));
    assert.deepEqual(Buffer.from(out.Plaintext!), b64(first.plaintext));
  });

  it('verifies the old MAC and signature and serves the same public key', async () => {
    const { hmac, ecc } = expected;
    assert.equal((await gw.client.send(new VerifyMacCommand({ KeyId: hmac.keyId, Message: b64(hmac.message), Mac: b64(hmac.mac), MacAlgorithm: 'HMAC_SHA_256' }))).MacValid, true);
    assert.equal((await gw.client.send(new VerifyCommand({ KeyId: ecc.keyId, Message: b64(ecc.message), Signature: b64(ecc.signature), SigningAlgorithm: 'ECDSA_SHA_256' }))).SignatureValid, true);
    assert.deepEqual(Buffer.from((await gw.client.send(new GetPublicKeyCommand({ KeyId: ecc.keyId }))).PublicKey!), b64(ecc.publicKey));
    assert.equal((await gw.client.send(new DescribeKeyCommand({ KeyId: expected.pendingDeletion.keyId }))).KeyMetadata!.KeyState, 'PendingDeletion');
  });

  it('rotates on: version 4 gets random ids beside the old label-derived ones, and the token matches the store', async () => {
    const keyId = expected.symmetric.keyId;
    await gw.client.send(new RotateKeyOnDemandCommand({ KeyId: keyId }));
    const blob = (await gw.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('new') }))).CiphertextBlob!;
    assert.equal(Buffer.from(blob).readUInt32BE(18), 4);
    assert.equal((await gw.client.send(new ListKeyRotationsCommand({ KeyId: keyId }))).Rotations!.length, 3);
    const ids = readStore(path.join(dir, 'data'), (db) =>
      (db.prepare('SELECT object_ids FROM key_materials WHERE key_id = ? ORDER BY version').all(keyId) as Array<{ object_ids: string }>).map((r) => JSON.parse(r.object_ids) as Record<string, string>),
    );
    assert.equal(Buffer.from(ids[0].kek, 'hex').toString(), `qkms/${keyId}/1/kek`, 'an old object keeps its id: its label\'s bytes');
    assert.match(ids[3].kek, /^[0-9a-f]{32}$/, 'a new one gets 16 random bytes');
    const state = tokenVsStore(path.join(dir, 'data'));
    assert.deepEqual([state.orphans, state.missing, state.duplicates, state.intents], [[], [], [], 0]);
  });

  it('adopted the old audit trail: it verifies, with the records written since, against the new anchor', async () => {
    assert.match(gw.output(), /adopt/i);
    const run = await runQkms(['audit', 'verify'], { QKMS_DATA_DIR: path.join(dir, 'data') });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /intact/);
  });
});
