import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CreateKeyCommand, DecryptCommand, DescribeKeyCommand, GenerateDataKeyCommand, KeyUnavailableException, ListKeysCommand } from '@aws-sdk/client-kms';
import { objectLabel } from '../../src/domain/key-repository';
import { findSoftHsmModule } from '../../src/hsm/pkcs11/embedded-token';
import { spawnGateway, startChildGateway } from '../support/child-gateway';
import { integration } from '../support/integration-hooks';

describe('The gateway process (npm start)', function () {
  this.timeout(60000);
  let dataDir: string;
  beforeEach(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-proc-'));
  });
  afterEach(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  it('creates the embedded SoftHSM2 token on first start, with the PIN stored 0600', async () => {
    const gw = await startChildGateway({ QKMS_DATA_DIR: dataDir });
    try {
      assert.match(gw.output(), /created the embedded SoftHSM2 token/);
      assert.equal(fs.statSync(path.join(dataDir, 'pin')).mode & 0o777, 0o600);
      assert.ok(fs.existsSync(path.join(dataDir, 'softhsm2.conf')));
      assert.ok(fs.existsSync(path.join(dataDir, 'qkms.db')));
      assert.equal((await fetch(`${gw.url}/health`)).status, 200);
      const pin = fs.readFileSync(path.join(dataDir, 'pin'), 'utf8');
      assert.ok(!gw.output().includes(pin), 'the PIN never reaches the log');
    } finally {
      assert.equal(await gw.stop(), 0);
    }
  });

  it('keeps keys and ciphertexts across a restart and reconciles with the token', async () => {
    const first = await startChildGateway({ QKMS_DATA_DIR: dataDir });
    const { KeyMetadata } = await first.client.send(new CreateKeyCommand({ Description: 'survives' }));
    const keyId = KeyMetadata!.KeyId!;
    const dk = await first.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: { app: 'restart' } }));
    assert.equal(await first.stop(), 0);

    const second = await startChildGateway({ QKMS_DATA_DIR: dataDir });
    try {
      assert.doesNotMatch(second.output(), /created the embedded SoftHSM2 token/);
      assert.match(second.output(), /"missing":0,"orphaned":0/);
      const described = (await second.client.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata!;
      assert.deepEqual(described, KeyMetadata);
      const back = await second.client.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob, EncryptionContext: { app: 'restart' } }));
      assert.deepEqual(Buffer.from(back.Plaintext!), Buffer.from(dk.Plaintext!));
      assert.deepEqual((await second.client.send(new ListKeysCommand({}))).Keys!.map((k) => k.KeyId), [keyId]);
    } finally {
      await second.stop();
    }
  });

  it('answers KeyUnavailableException and logs the difference when key material vanished from the token', async function () {
    const tool = spawnSync('pkcs11-tool', ['--version']);
    if (tool.error) this.skip(); // opensc not installed: .ci/run installs it
    const first = await startChildGateway({ QKMS_DATA_DIR: dataDir });
    const keyId = (await first.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    await first.stop();
    const pin = fs.readFileSync(path.join(dataDir, 'pin'), 'utf8');
    execFileSync('pkcs11-tool', ['--module', findSoftHsmModule(), '--token-label', 'qkms', '--login', '--pin', pin, '--delete-object', '--type', 'secrkey', '--label', objectLabel(keyId, 1, 'kek')], {
      env: { ...process.env, SOFTHSM2_CONF: path.join(dataDir, 'softhsm2.conf') },
      stdio: 'pipe',
    });
    const second = await startChildGateway({ QKMS_DATA_DIR: dataDir });
    try {
      assert.match(second.output(), /reconcile: key object missing from the token/);
      await assert.rejects(second.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' })), KeyUnavailableException);
    } finally {
      await second.stop();
    }
  });

  for (const [what, env, pattern] of [
    ['a port that is not a number', { QKMS_PORT: 'eighty' }, /QKMS_PORT/],
    ['an unknown QKMS_ setting (a typo)', { QKMS_PROT: '8080' }, /QKMS_PROT.*not allowed/],
    ['an ARN format that does not exist', { QKMS_ARN_FORMAT: 'gcp' }, /QKMS_ARN_FORMAT/],
    ['a module without a PIN', { QKMS_PKCS11_MODULE: '/usr/lib/softhsm/libsofthsm2.so' }, /QKMS_PKCS11_PIN/],
  ] as const) {
    it(`exits with code 2 and a clear message for ${what}`, async () => {
      const { output, exited } = spawnGateway({ QKMS_DATA_DIR: dataDir, ...env });
      assert.equal(await exited, 2);
      assert.match(output(), pattern);
    });
  }

  it('stops cleanly on SIGTERM during start-up: waits for the start, closes it, exits 0, and the next start works', async () => {
    const faults = path.join(dataDir, 'faults.json');
    // A slow start, as a token with many objects gives: indexing the token's objects takes 3 s.
    fs.writeFileSync(faults, JSON.stringify([{ function: 'C_FindObjectsInit', delayMs: 3000, count: 1 }]));
    const env = { QKMS_DATA_DIR: path.join(dataDir, 'data'), QKMS_FAULTS_FILE: faults };
    const { child, output, exited } = spawnGateway(env);
    while (!/"message":"listening"/.test(output())) {
      assert.equal(child.exitCode, null, output());
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill('SIGTERM');
    assert.equal(await exited, 0, output());
    assert.match(output(), /"message":"stopping"[\s\S]*"message":"stopped"/);
    assert.doesNotMatch(output(), /"message":"ready"/);
    assert.doesNotMatch(output(), /start-up did not finish/, 'the start was waited for and closed, not abandoned');
    fs.writeFileSync(faults, '[]');
    const again = await startChildGateway(env); // the data-dir lock was released and the token closed
    try {
      assert.ok((await again.client.send(new CreateKeyCommand({}))).KeyMetadata?.KeyId);
    } finally {
      assert.equal(await again.stop(), 0);
    }
  });

  it('exits with code 3 and one log line when its port is taken', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const { output, exited } = spawnGateway({ QKMS_DATA_DIR: dataDir, QKMS_PORT: String((taken.address() as net.AddressInfo).port) });
      assert.equal(await exited, 3);
      assert.ok(output().split('\n').some((l) => l.includes('"message":"cannot listen"') && l.includes('EADDRINUSE')), output());
      assert.doesNotMatch(output(), /\n\s+at /, 'no stack trace');
    } finally {
      taken.close();
    }
  });

  it('exits with code 3 at boot for a wrong PIN, without printing it', async () => {
    const { token } = integration();
    const { output, exited } = spawnGateway({
      QKMS_DATA_DIR: dataDir,
      QKMS_PKCS11_MODULE: token.modulePath,
      QKMS_PKCS11_TOKEN_LABEL: token.label,
      QKMS_PKCS11_PIN: 'wrong-pin-1234',
      SOFTHSM2_CONF: token.confPath,
    });
    assert.equal(await exited, 3);
    assert.match(output(), /CKR_PIN_INCORRECT/);
    assert.ok(!output().includes('wrong-pin-1234'));
  });
});
