import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runQkms } from '../support/cli';
import { isSkipped, startToken } from '../support/tokens';

describe('qkms token capabilities', function () {
  this.timeout(120_000);

  it('prints, for the embedded SoftHSM2 token, each mechanism with the KMS features it carries and what it lacks, and exits 0', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-caps-'));
    try {
      const run = await runQkms(['token', 'capabilities'], { QKMS_DATA_DIR: dataDir });
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /yes\s+CKM_AES_KEY_GEN\s+CreateKey SYMMETRIC_DEFAULT/);
      // SoftHSM2's OAEP has SHA-1 only: SHA-256 is raw RSA in the HSM, the padding checked in QKMS.
      assert.match(run.stdout, /yes\s+CKM_RSA_X_509\s+Encrypt\/Decrypt RSAES_OAEP_SHA_256\n/);
      assert.match(run.stdout, /RSAES_OAEP_SHA_256 as raw RSA with the private key in the HSM \(CKM_RSA_X_509\) and the OAEP padding checked in QKMS/);
      assert.match(run.stdout, /data keys sealed as: AES_KWP_HMAC, AES_CBC_HMAC, AES_GCM_ENCRYPT .*Encrypt as AES_GCM/);
      const json = JSON.parse((await runQkms(['--json', 'token', 'capabilities'], { QKMS_DATA_DIR: dataDir })).stdout);
      assert.equal(json.kwpMechanism, 0x210a);
      assert.equal(json.rsaOaepSha256, 'raw-rsa');
      assert.match(json.checks['rsa-oaep-sha256'].detail, /raw RSA in the HSM, OAEP-SHA-256 checked in QKMS \(CKM_RSA_PKCS_OAEP with SHA-256 is listed but refused: CKR_ARGUMENTS_BAD\)/);
      assert.deepEqual(json.problems, []);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('exits 2 on a token QKMS cannot serve (tpm2-pkcs11), naming the missing mechanism', async function () {
    const token = await startToken('tpm2');
    if (isSkipped(token)) {
      console.log(`      skipped: ${token.skip}`);
      return this.skip();
    }
    try {
      const run = await runQkms(['token', 'capabilities'], {
        ...token.env,
        QKMS_DATA_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-caps-tpm2-')),
        QKMS_PKCS11_MODULE: token.modulePath,
        QKMS_PKCS11_TOKEN_LABEL: token.tokenLabel,
        QKMS_PKCS11_PIN: token.pin,
      });
      assert.equal(run.code, 2, run.stdout + run.stderr);
      assert.match(run.stdout, /QKMS cannot serve on this token:[\s\S]*CKM_AES_KEY_GEN/);
    } finally {
      await token.stop();
    }
  });
});
