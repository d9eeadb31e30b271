import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateKeyCommand, DecryptCommand, EncryptCommand } from '@aws-sdk/client-kms';
import type { ChildGateway } from '../support/child-gateway';
import { runQkms } from '../support/cli';
import { skipWithoutPostgres } from '../support/postgres';
import { freshDeployment, type Deployment } from '../support/replicas';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The key-material protocol across replicas, with real processes: replica A is held inside a
 * CreateKey after both token objects exist and before the store activates the key
 * (QKMS_FAULTS_FILE), replica C starts meanwhile (its start-up repair must leave A's intent and
 * objects alone), then A is SIGKILLed and started again (its repair must roll the dead intent back:
 * no intent, no object left). Every acknowledged ciphertext decrypts on every replica throughout,
 * and the deployment's audit chains verify.
 */
describe('A replica killed inside CreateKey while another one starts', function () {
  this.timeout(120_000);
  let deployment: Deployment;
  let dir: string;
  before(async function () {
    skipWithoutPostgres(this);
    deployment = await freshDeployment();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-replica-crash-'));
  });
  after(async () => {
    await deployment?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a live replica\'s half-made key survives another\'s start; once that replica is dead, the next start rolls it back; nothing acknowledged is lost', async () => {
    const faults = path.join(dir, 'faults.json');
    fs.writeFileSync(faults, '[]');
    const [held] = await deployment.start(['a'], { QKMS_FAULTS_FILE: faults }); // the fault file is A's only
    await deployment.start(['b']);
    const keyId = (await held.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    const acknowledged = (await held.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('acknowledged') }))).CiphertextBlob!;

    fs.writeFileSync(faults, JSON.stringify([{ function: 'C_GenerateKey', delayMs: 60000, count: 1, skip: 1, after: true }]));
    await sleep(1200); // re-read at most once a second
    const answer = held.client.send(new CreateKeyCommand({ Description: 'half-made' })).then((v) => v, (e: unknown) => e);
    for (const deadline = Date.now() + 20000; !/fault injection: holding C_GenerateKey after/.test(held.output()); await sleep(25)) assert.ok(Date.now() < deadline, 'the hold');
    const [intent] = await deployment.query<{ object_ids: Record<string, string> }>('SELECT object_ids FROM material_intents');
    const objectIds = Object.values(intent.object_ids);
    assert.deepEqual(objectIds.map((id) => deployment.objectsWithId(id)), [1, 1], 'both objects of the half-made key exist');

    const [c] = await deployment.start(['c']);
    assert.match(c.output(), /"inFlightOnLiveReplicas":1/);
    assert.equal((await deployment.query('SELECT 1 FROM material_intents')).length, 1, 'the live replica\'s intent is left alone');
    assert.deepEqual(objectIds.map((id) => deployment.objectsWithId(id)), [1, 1], 'and its objects');

    await held.stop('SIGKILL');
    deployment.replicas.delete('a');
    assert.ok((await answer) instanceof Error, 'the client of the killed replica got no key');
    fs.writeFileSync(faults, '[]');
    const [restarted] = await deployment.start(['a']);
    assert.match(restarted.output(), /"rolledBack":1/);
    assert.deepEqual(await deployment.query('SELECT 1 FROM material_intents'), [], 'the dead replica\'s intent is rolled back');
    assert.deepEqual(objectIds.map((id) => deployment.objectsWithId(id)), [0, 0], 'and its objects destroyed');
    assert.deepEqual((await deployment.query<{ description: string }>("SELECT description FROM keys WHERE description = 'half-made'")), [], 'no half-made key');

    for (const gw of deployment.replicas.values() as Iterable<ChildGateway>) {
      assert.equal(Buffer.from((await gw.client.send(new DecryptCommand({ CiphertextBlob: acknowledged }))).Plaintext!).toString(), 'acknowledged');
    }
    const verified = await runQkms(['audit', 'verify'], { QKMS_STORE_URL: deployment.url, QKMS_DATA_DIR: dir, QKMS_PKCS11_MODULE: deployment.token.modulePath, QKMS_PKCS11_TOKEN_LABEL: deployment.token.label, QKMS_PKCS11_PIN: deployment.token.pin, SOFTHSM2_CONF: deployment.token.confPath });
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
  });
});
