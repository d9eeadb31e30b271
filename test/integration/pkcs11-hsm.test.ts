import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { CreateKeyCommand } from '@aws-sdk/client-kms';
import { materialLabels } from '../../src/domain/key-repository';
import { hsmContract } from '../support/hsm-contract';
import { integration } from '../support/integration-hooks';
import { startGateway } from '../support/harness';

hsmContract('Pkcs11Hsm on SoftHSM2', () => integration().hsm);

describe('Pkcs11Hsm on SoftHSM2: what the token itself says', () => {
  const pkcs11Tool = (args: string[]) => {
    const { token } = integration();
    return spawnSync('pkcs11-tool', ['--module', token.modulePath, '--token-label', token.label, '--login', '--pin', token.pin, ...args], {
      env: { ...process.env, SOFTHSM2_CONF: token.confPath },
      encoding: 'utf8',
    });
  };

  it('holds KMS keys as sensitive, never-extractable token objects that refuse other mechanisms', async function () {
    if (spawnSync('pkcs11-tool', ['--version']).error) this.skip(); // opensc not installed: .ci/run installs it
    const gw = await startGateway(integration().hsm);
    try {
      const keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      const { kek, mac } = materialLabels(keyId, 1);
      const listing = pkcs11Tool(['--list-objects', '--type', 'secrkey']).stdout;
      for (const label of [kek, mac]) {
        const block = listing.split(/(?=Secret Key Object)/).find((b) => b.includes(`label:      ${label}\n`));
        assert.ok(block, `${label} is on the token`);
        assert.match(block!, /Access:\s+sensitive, always sensitive, never extractable, local/);
      }
      const read = pkcs11Tool(['--read-object', '--type', 'secrkey', '--label', kek]);
      assert.notEqual(read.status, 0);
      assert.match(read.stderr, /CKR_ATTRIBUTE_SENSITIVE/);
      const input = `${integration().token.dir}/in.bin`;
      fs.writeFileSync(input, Buffer.alloc(32));
      const cbc = pkcs11Tool(['--encrypt', '--mechanism', 'AES-CBC', '--iv', '00'.repeat(16), '--label', kek, '--input-file', input, '--output-file', `${input}.out`]);
      assert.notEqual(cbc.status, 0, 'CKA_ALLOWED_MECHANISMS keeps the KEK to KWP and GCM');
    } finally {
      await gw.close();
    }
  });

  it('SoftHSM2 2.6.1 quirk: a KWP unwrap comes back zero-padded to a multiple of 8 (the blob header restores the length)', async () => {
    const { hsm } = integration();
    const kek = `quirk/${Date.now()}/kek`;
    await hsm.generateKek(kek);
    const { plaintext, wrapped } = await hsm.generateWrappedDataKey(kek, 7, { mechanism: 'AES_KWP' });
    const unwrapped = await hsm.unwrapDataKey(kek, wrapped);
    // If this starts failing, the token now honours RFC 5649's length: Envelope.open copes either way.
    assert.equal(unwrapped.length, 8);
    assert.deepEqual(unwrapped.subarray(0, 7), plaintext);
    assert.equal(unwrapped[7], 0);
  });

  it('SoftHSM2 2.6.1 cannot wrap with AES-GCM (why QKMS_DATA_KEY_WRAP defaults to AES_KWP_HMAC)', async () => {
    const { hsm } = integration();
    const kek = `quirk/${Date.now()}/gcm-kek`;
    await hsm.generateKek(kek);
    await assert.rejects(
      hsm.generateWrappedDataKey(kek, 32, { mechanism: 'AES_GCM', aad: Buffer.from('aad') }),
      (e: Error & { ckr?: string }) => e.ckr === 'CKR_MECHANISM_INVALID',
    );
  });
});
