import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateKeyCommand, DecryptCommand, EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { listeningAddress, spawnGateway } from '../support/child-gateway';
import { runQkms } from '../support/cli';
import { TEST_CREDENTIALS } from '../support/harness';
import { sharedPostgres, skipWithoutPostgres } from '../support/postgres';
import { recordSecretsMiddleware } from '../support/secrets';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Lines of the gateway's JSON log with this message. */
function lines(output: string, message: string): Array<Record<string, any>> {
  return output.split('\n').filter((l) => l.includes(`"message":"${message}"`)).map((l) => JSON.parse(l));
}

describe('QKMS_WORKERS: gateway processes sharing one port', function () {
  this.timeout(120_000);

  it('refuses more than one worker on the embedded SQLite store, saying why (exit 2)', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-workers-sqlite-'));
    const { output, exited } = spawnGateway({ QKMS_DATA_DIR: dataDir, QKMS_WORKERS: '2' });
    assert.equal(await exited, 2, output());
    assert.match(output(), /QKMS_WORKERS=2 needs QKMS_STORE_URL/);
  });

  it('serves from two workers; a worker killed with SIGKILL under load is replaced, no request fails beyond the SDK retries, and every ciphertext decrypts', async function () {
    skipWithoutPostgres(this);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-workers-'));
    const env = { QKMS_DATA_DIR: path.join(dir, 'data'), QKMS_STORE_URL: await (await sharedPostgres()).createDatabase('workers'), QKMS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId, QKMS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey };
    // The token and its internal keys first, so that the workers' starts do not race to make them.
    assert.equal((await runQkms(['init'], env)).code, 0);
    const { child, output, exited } = spawnGateway({ ...env, QKMS_WORKERS: '2' });
    try {
      for (const deadline = Date.now() + 60_000; lines(output(), 'ready').length < 2; await sleep(100)) {
        assert.ok(Date.now() < deadline && child.exitCode === null, output());
      }
      const url = `http://${listeningAddress(output())}`;
      // A request on the killed worker's connection may get no answer at all: a client that retries
      // also times out (the SDK then retries it), as any production client should.
      const client = new KMSClient({ endpoint: url, region: 'us-east-1', credentials: TEST_CREDENTIALS, maxAttempts: 5, requestHandler: { requestTimeout: 5000, connectionTimeout: 2000 } });
      recordSecretsMiddleware(client);
      const keyId = (await client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      const made: Array<{ blob: Uint8Array; text: string }> = [];
      let i = 0;
      const load = async (until: number) => {
        while (Date.now() < until) {
          const text = `message ${i++}`;
          made.push({ blob: (await client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from(text) }))).CiphertextBlob!, text });
        }
      };
      // Four callers for a second: connections spread over both workers.
      await Promise.all(Array.from({ length: 4 }, () => load(Date.now() + 1000)));
      const served = new Set(lines(output(), 'request').map((l) => l.worker));
      assert.deepEqual([...served].sort(), [1, 2], 'both workers answered requests');

      const victim = lines(output(), 'worker started').find((l) => l.worker === 1)!;
      const loaded = Promise.all(Array.from({ length: 4 }, () => load(Date.now() + 4000)));
      await sleep(500);
      process.kill(victim.pid, 'SIGKILL');
      await loaded; // rejects if any request failed beyond its retries
      assert.ok(lines(output(), 'worker exited').some((l) => l.pid === victim.pid && l.signal === 'SIGKILL'));
      for (const deadline = Date.now() + 30_000; lines(output(), 'ready').length < 3; await sleep(100)) assert.ok(Date.now() < deadline, output());
      for (const { blob, text } of made) assert.equal(Buffer.from((await client.send(new DecryptCommand({ CiphertextBlob: blob }))).Plaintext!).toString(), text);
      client.destroy();
    } finally {
      child.kill('SIGTERM');
      assert.equal(await exited, 0, output());
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
