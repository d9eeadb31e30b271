import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CancelKeyDeletionCommand,
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  EncryptCommand,
  DeleteImportedKeyMaterialCommand,
  GenerateDataKeyCommand,
  GetParametersForImportCommand,
  ImportKeyMaterialCommand,
  KMSInternalException,
  KMSInvalidStateException,
  ListKeysCommand,
  NotFoundException,
  KMSClient,
  ReplicateKeyCommand,
  RotateKeyOnDemandCommand,
  ScheduleKeyDeletionCommand,
  SignCommand,
  VerifyCommand,
} from '@aws-sdk/client-kms';
import Database from 'better-sqlite3';
import { spawnGateway, startChildGateway, type ChildGateway } from '../support/child-gateway';
import { runQkms } from '../support/cli';
import { wrapKeyMaterial } from '../support/import-wrap';
import { tokenVsStore } from '../support/token-state';
import { TEST_CREDENTIALS } from '../support/harness';

/**
 * Issue 12 "Identity that cannot collide" and "Atomic lifecycle", driven deterministically: a real
 * gateway process over its embedded SoftHSM2 token is held inside one PKCS#11 call
 * (QKMS_FAULTS_FILE; `after` holds a call once it returned, so its object exists), SIGKILLed there,
 * and started again. Every time: every acknowledged ciphertext still decrypts, and a fresh search of
 * the token (pkcs11-tool) against the store finds no orphan, nothing missing, no id carried twice,
 * and no unfinished intent.
 */
describe('Crash safety: SIGKILL inside every step of a key-material change', function () {
  this.timeout(120000);
  let dir: string;
  let faults: string;
  let env: Record<string, string>;
  let gw: ChildGateway | undefined;

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /** The fault file is re-read at most once a second. */
  const setFaults = async (rules: object[]) => {
    fs.writeFileSync(faults, JSON.stringify(rules));
    await sleep(1200);
  };
  const waitFor = async (what: () => boolean, label: string) => {
    for (const deadline = Date.now() + 20000; !what(); await sleep(25)) if (Date.now() > deadline) throw new Error(`timed out waiting for ${label}`);
  };
  const hold = (fn: string, options: { skip?: number; after?: boolean } = {}) => ({ function: fn, delayMs: 60000, count: 1, ...options });
  const holding = (fn: string) => new RegExp(`fault injection: holding ${fn} `);

  /** Runs `action` into the held call, kills the gateway there, and starts it again without faults. */
  const crashDuring = async (rules: object[], fn: string, action: (g: ChildGateway) => Promise<unknown>): Promise<{ answer: Promise<unknown> }> => {
    await setFaults(rules);
    const g = gw!;
    const answer = action(g).then((v) => v, (e: unknown) => e);
    await waitFor(() => holding(fn).test(g.output()), `the hold in ${fn}`);
    await g.stop('SIGKILL');
    fs.writeFileSync(faults, '[]');
    gw = await startChildGateway(env);
    return { answer };
  };

  /** Each acknowledged ciphertext decrypts to what was encrypted; the token and the store agree exactly. */
  const assertIntact = async (acknowledged: Array<{ blob: Uint8Array; plaintext: Buffer }>) => {
    for (const { blob, plaintext } of acknowledged) {
      assert.deepEqual(Buffer.from((await gw!.client.send(new DecryptCommand({ CiphertextBlob: blob }))).Plaintext!), plaintext);
    }
    const state = tokenVsStore(path.join(dir, 'data'));
    assert.deepEqual({ orphans: state.orphans, missing: state.missing, duplicates: state.duplicates, intents: state.intents }, { orphans: [], missing: [], duplicates: [], intents: 0 });
    const verified = await runQkms(['audit', 'verify'], { QKMS_DATA_DIR: path.join(dir, 'data') });
    assert.equal(verified.code, 0, `the audit trail verifies after the crash: ${verified.stdout}${verified.stderr}`);
    return state;
  };
  const encrypt = async (keyId: string, text: string) => ({
    blob: (await gw!.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from(text) }))).CiphertextBlob!,
    plaintext: Buffer.from(text),
  });
  const dataKey = async (keyId: string) => {
    const out = await gw!.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
    return { blob: out.CiphertextBlob!, plaintext: Buffer.from(out.Plaintext!) };
  };
  const versionOf = (blob: Uint8Array) => Buffer.from(blob).readUInt32BE(18);
  const keyIds = async () => (await gw!.client.send(new ListKeysCommand({}))).Keys!.map((k) => k.KeyId!).sort();

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-crash-'));
    faults = path.join(dir, 'faults.json');
    fs.writeFileSync(faults, '[]');
    env = { QKMS_DATA_DIR: path.join(dir, 'data'), QKMS_FAULTS_FILE: faults };
    gw = await startChildGateway(env);
  });
  afterEach(async () => {
    await gw?.stop();
    gw = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  // CreateKey of a symmetric key: C_GenerateKey (KEK), C_GenerateKey (MAC), then the store.
  for (const [step, rule] of [
    ['before any object exists', hold('C_GenerateKey')],
    ['after the KEK, before the MAC key', hold('C_GenerateKey', { skip: 1 })],
    ['after both objects, before the store records the key', hold('C_GenerateKey', { skip: 1, after: true })],
  ] as const) {
    it(`CreateKey killed ${step}: no key, no object left`, async () => {
      const kept = (await gw!.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      const acknowledged = [await encrypt(kept, 'kept'), await dataKey(kept)];
      const { answer } = await crashDuring([rule], 'C_GenerateKey', (g) => g.client.send(new CreateKeyCommand({})));
      assert.ok((await answer) instanceof Error, 'the client got no key');
      assert.deepEqual(await keyIds(), [kept]);
      await assertIntact(acknowledged);
      assert.match(gw!.output(), /1 unfinished key-material changes rolled back/, 'the intent was recorded before any object was made');
    });
  }

  it('CreateKey of a key pair (generated on the libuv pool) killed after the pair exists: rolled back', async () => {
    const { answer } = await crashDuring([hold('C_GenerateKeyPairAsync', { after: true })], 'C_GenerateKeyPairAsync', (g) =>
      g.client.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' })),
    );
    assert.ok((await answer) instanceof Error);
    assert.deepEqual(await keyIds(), []);
    await assertIntact([]);
    // The key pair made afterwards works: nothing of the rolled-back one is in its way.
    const keyId = (await gw!.client.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata!.KeyId!;
    const message = Buffer.from('signed after a crash');
    const { Signature } = await gw!.client.send(new SignCommand({ KeyId: keyId, Message: message, SigningAlgorithm: 'ECDSA_SHA_256' }));
    assert.equal((await gw!.client.send(new VerifyCommand({ KeyId: keyId, Message: message, Signature, SigningAlgorithm: 'ECDSA_SHA_256' }))).SignatureValid, true);
  });

  // RotateKeyOnDemand: the version reserved, C_GenerateKey ×2, then activation.
  for (const [step, rule] of [
    ['before any object exists', hold('C_GenerateKey')],
    ['after the new KEK, before its MAC key', hold('C_GenerateKey', { skip: 1 })],
    ['after both new objects, before activation', hold('C_GenerateKey', { skip: 1, after: true })],
  ] as const) {
    it(`RotateKeyOnDemand killed ${step}: the old version stays current, every ciphertext decrypts, the version number is not reused`, async () => {
      const keyId = (await gw!.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      await gw!.client.send(new RotateKeyOnDemandCommand({ KeyId: keyId }));
      const acknowledged = [await encrypt(keyId, 'under version 2'), await dataKey(keyId)];
      assert.equal(versionOf(acknowledged[0].blob), 2);
      const { answer } = await crashDuring([rule], 'C_GenerateKey', (g) => g.client.send(new RotateKeyOnDemandCommand({ KeyId: keyId })));
      assert.ok((await answer) instanceof Error);
      await assertIntact(acknowledged);
      assert.equal(versionOf((await encrypt(keyId, 'x')).blob), 2, 'the interrupted version never became current');
      await gw!.client.send(new RotateKeyOnDemandCommand({ KeyId: keyId }));
      const after = await encrypt(keyId, 'under the next version');
      assert.equal(versionOf(after.blob), 4, 'version 3 was reserved by the interrupted rotation and is never used');
      await assertIntact([...acknowledged, after]);
    });
  }

  /**
   * A key whose waiting period is over, as if 7 days had passed: the store's deletion date moved
   * into the past while the gateway is stopped. The next gateway's scheduler deletes it at start.
   */
  const keyDueForDeletion = async (): Promise<{ keyId: string; survivor: Array<{ blob: Uint8Array; plaintext: Buffer }> }> => {
    const keyId = (await gw!.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    await gw!.client.send(new RotateKeyOnDemandCommand({ KeyId: keyId })); // four objects: two versions
    const other = (await gw!.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    const survivor = [await encrypt(other, 'not deleted'), await dataKey(other)];
    await gw!.client.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 }));
    await gw!.stop();
    const db = new Database(path.join(dir, 'data', 'qkms.db'));
    db.prepare('UPDATE keys SET deletion_date = ? WHERE key_id = ?').run(Date.now() / 1000 - 60, keyId);
    db.close();
    return { keyId, survivor };
  };

  for (const [step, rule] of [
    ['after the claim, before any object is destroyed', hold('C_DestroyObject')],
    ['with half the objects destroyed', hold('C_DestroyObject', { skip: 2 })],
    ['with every object destroyed, before the metadata goes', hold('C_DestroyObject', { skip: 3, after: true })],
  ] as const) {
    it(`the scheduler's deletion killed ${step}: a cancel meanwhile changes nothing, and the next start finishes it`, async () => {
      const { keyId, survivor } = await keyDueForDeletion();
      fs.writeFileSync(faults, JSON.stringify([rule]));
      gw = await startChildGateway(env); // its first scheduler run, at start, deletes the key
      const g = gw;
      await waitFor(() => holding('C_DestroyObject').test(g.output()), 'the hold in C_DestroyObject');
      // The claim refuses it (KMSInvalidStateException, unit-tested); here, with the HSM held, its
      // audit record cannot be signed either, so the answer is KMSInternalException. Either way the
      // key stays claimed: the deletion below completes.
      await assert.rejects(g.client.send(new CancelKeyDeletionCommand({ KeyId: keyId })), (e: Error) => e instanceof KMSInvalidStateException || e instanceof KMSInternalException);
      await g.stop('SIGKILL');
      fs.writeFileSync(faults, '[]');
      gw = await startChildGateway(env);
      await waitFor(() => /key deleted at the end of its waiting period/.test(gw!.output()), 'the resumed deletion');
      await assert.rejects(gw.client.send(new DescribeKeyCommand({ KeyId: keyId })), NotFoundException);
      const state = await assertIntact(survivor);
      assert.equal(state.keys, 1);
      const trail = fs.readdirSync(path.join(dir, 'data', 'audit')).filter((f) => f.endsWith('.jsonl')).map((f) => fs.readFileSync(path.join(dir, 'data', 'audit', f), 'utf8')).join('');
      const deletions = trail.split('\n').filter((l) => l.includes('"operation":"DeleteKey"') && l.includes(keyId));
      assert.ok(deletions.length >= 1 && deletions.every((l) => l.includes('"sourceIp":"scheduler"')), 'the scheduler\'s deletion is in the audit trail');
    });
  }

  it('a multi-Region key: its replica\'s deletion leaves the token alone; its last record\'s deletion killed mid-destroy is finished by the next start', async () => {
    const regional = { ...env, QKMS_REGIONS: 'us-east-1,us-west-2', QKMS_ARN_FORMAT: 'aws' };
    await gw!.stop();
    gw = await startChildGateway(regional);
    const west = () => new KMSClient({ endpoint: gw!.url, region: 'us-west-2', credentials: TEST_CREDENTIALS, maxAttempts: 1 });
    const keyId = (await gw.client.send(new CreateKeyCommand({ MultiRegion: true }))).KeyMetadata!.KeyId!;
    await gw.client.send(new RotateKeyOnDemandCommand({ KeyId: keyId })); // four objects: two versions
    await gw.client.send(new ReplicateKeyCommand({ KeyId: keyId, ReplicaRegion: 'us-west-2' }));
    const fromWest = (await west().send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('made in us-west-2') }))).CiphertextBlob!;
    const other = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    const survivor = [await encrypt(other, 'not deleted')];
    const expire = async (region: string) => {
      await gw!.stop();
      const db = new Database(path.join(dir, 'data', 'qkms.db'));
      db.prepare('UPDATE keys SET deletion_date = ? WHERE key_id = ? AND region = ?').run(Date.now() / 1000 - 60, keyId, region);
      db.close();
    };
    // The replica's waiting period ends: its record goes, the token is not touched (a destroy would be held).
    await west().send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 }));
    await expire('us-west-2');
    fs.writeFileSync(faults, JSON.stringify([hold('C_DestroyObject')]));
    gw = await startChildGateway(regional);
    await waitFor(() => /key deleted at the end of its waiting period/.test(gw!.output()), 'the replica\'s deletion');
    assert.doesNotMatch(gw.output(), holding('C_DestroyObject'));
    await assert.rejects(west().send(new DescribeKeyCommand({ KeyId: keyId })), NotFoundException);
    assert.equal(Buffer.from((await gw.client.send(new DecryptCommand({ CiphertextBlob: fromWest }))).Plaintext!).toString(), 'made in us-west-2');
    assert.equal(tokenVsStore(path.join(dir, 'data')).missing.length, 0, 'the material is all there for the primary');
    // The primary, now alone, is deleted like any key: killed with half its objects destroyed, finished by the next start.
    const scheduled = await gw.client.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 }));
    assert.equal(scheduled.KeyState, 'PendingDeletion');
    await expire('us-east-1');
    fs.writeFileSync(faults, JSON.stringify([hold('C_DestroyObject', { skip: 2 })]));
    gw = await startChildGateway(regional);
    const g = gw;
    await waitFor(() => holding('C_DestroyObject').test(g.output()), 'the hold in C_DestroyObject');
    await g.stop('SIGKILL');
    fs.writeFileSync(faults, '[]');
    gw = await startChildGateway(regional);
    await waitFor(() => /key deleted at the end of its waiting period/.test(gw!.output()), 'the resumed deletion');
    await assert.rejects(gw.client.send(new DescribeKeyCommand({ KeyId: keyId })), NotFoundException);
    await assert.rejects(gw.client.send(new DecryptCommand({ CiphertextBlob: fromWest })), (e: Error) => e.name === 'InvalidCiphertextException');
    const state = await assertIntact(survivor);
    assert.equal(state.keys, 1);
  });

  it('start-up reconciliation killed while rolling back: the next start finishes the rollback', async () => {
    const keyId = (await gw!.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    const acknowledged = [await encrypt(keyId, 'v1')];
    // A rotation killed with both new objects made: an intent and two objects for the next start.
    await crashDuring([hold('C_GenerateKey', { skip: 1, after: true })], 'C_GenerateKey', (g) => g.client.send(new RotateKeyOnDemandCommand({ KeyId: keyId })));
    // That start rolled it back already; make the same state again, then kill the rollback itself.
    await crashDuring([hold('C_GenerateKey', { skip: 1, after: true })], 'C_GenerateKey', (g) => g.client.send(new RotateKeyOnDemandCommand({ KeyId: keyId })));
    await gw!.stop();
    // Again, and this time the restart is held inside the rollback's second destroy and killed.
    gw = await startChildGateway(env);
    await setFaults([hold('C_GenerateKey', { skip: 1, after: true })]);
    const g = gw;
    void g.client.send(new RotateKeyOnDemandCommand({ KeyId: keyId })).catch(() => undefined);
    await waitFor(() => holding('C_GenerateKey').test(g.output()), 'the rotation hold');
    await g.stop('SIGKILL');
    fs.writeFileSync(faults, JSON.stringify([hold('C_DestroyObject', { skip: 1 })]));
    const starting = spawnGateway(env);
    await waitFor(() => holding('C_DestroyObject').test(starting.output()), 'the hold inside reconciliation');
    assert.doesNotMatch(starting.output(), /"message":"ready"/, 'killed before it served anything');
    starting.child.kill('SIGKILL');
    await starting.exited;
    fs.writeFileSync(faults, '[]');
    gw = await startChildGateway(env);
    assert.match(gw.output(), /1 unfinished key-material changes rolled back/);
    await assertIntact(acknowledged);
    await gw.client.send(new RotateKeyOnDemandCommand({ KeyId: keyId }));
    assert.equal(versionOf((await encrypt(keyId, 'x')).blob), 5, 'versions 2, 3 and 4 were reserved by the three interrupted rotations');
  });

  // BYOK (domain/import-material.ts): an imported key, the material and the request that imports it again.
  const importedKey = async () => {
    const keyId = (await gw!.client.send(new CreateKeyCommand({ Origin: 'EXTERNAL' }))).KeyMetadata!.KeyId!;
    const material = crypto.randomBytes(32);
    const importRequest = async () => {
      const params = await gw!.client.send(new GetParametersForImportCommand({ KeyId: keyId, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' }));
      const EncryptedKeyMaterial = wrapKeyMaterial(params.PublicKey!, 'RSAES_OAEP_SHA_1', material);
      return new ImportKeyMaterialCommand({ KeyId: keyId, ImportToken: params.ImportToken, EncryptedKeyMaterial, ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' });
    };
    return { keyId, importRequest };
  };
  const stateOf = async (keyId: string) => (await gw!.client.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata!.KeyState;

  // ImportKeyMaterial of symmetric material: intent, C_UnwrapKey (the KEK), the length measured on
  // a session copy (C_UnwrapKey, C_GenerateKey, C_WrapKey), the check value (C_EncryptInit,
  // C_Encrypt), then activation.
  for (const [step, rule, fn] of [
    ['after the KEK exists on the token', hold('C_UnwrapKey', { after: true }), 'C_UnwrapKey'],
    ['after every HSM step, before activation', hold('C_Encrypt', { after: true }), 'C_Encrypt'],
  ] as const) {
    it(`ImportKeyMaterial killed ${step}: the key stays PendingImport with nothing on the token, and the import then succeeds`, async () => {
      const { keyId, importRequest } = await importedKey();
      const request = await importRequest();
      const { answer } = await crashDuring([rule], fn, (g) => g.client.send(request));
      assert.ok((await answer) instanceof Error, 'the client got no answer');
      assert.equal(await stateOf(keyId), 'PendingImport');
      await assertIntact([]);
      await gw!.client.send(await importRequest());
      assert.equal(await stateOf(keyId), 'Enabled');
      await assertIntact([await encrypt(keyId, 'imported after a crash')]);
    });
  }

  it('DeleteImportedKeyMaterial killed before the objects are destroyed: the next start destroys them; the same material imported again decrypts the old ciphertexts', async () => {
    const { keyId, importRequest } = await importedKey();
    await gw!.client.send(await importRequest());
    const acknowledged = [await encrypt(keyId, 'before the deletion'), await dataKey(keyId)];
    const { answer } = await crashDuring([hold('C_DestroyObject')], 'C_DestroyObject', (g) => g.client.send(new DeleteImportedKeyMaterialCommand({ KeyId: keyId })));
    assert.ok((await answer) instanceof Error);
    assert.equal(await stateOf(keyId), 'PendingImport', 'the deletion was committed before any object went');
    assert.match(gw!.output(), /1 unfinished key-material changes rolled back/);
    await gw!.client.send(await importRequest());
    await assertIntact(acknowledged);
  });

  it('GetParametersForImport killed after the wrapping pair exists: the pair is owned (no orphan), and other parameters work', async () => {
    const { keyId, importRequest } = await importedKey();
    const { answer } = await crashDuring([hold('C_GenerateKeyPairAsync', { after: true })], 'C_GenerateKeyPairAsync', (g) =>
      g.client.send(new GetParametersForImportCommand({ KeyId: keyId, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' })),
    );
    assert.ok((await answer) instanceof Error);
    await assertIntact([]);
    await gw!.client.send(await importRequest());
    assert.equal(await stateOf(keyId), 'Enabled');
  });
});
