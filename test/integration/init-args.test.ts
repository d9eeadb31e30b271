import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnGateway } from '../support/child-gateway';
import { qkmsJson, runQkms } from '../support/cli';
import { integration } from '../support/integration-hooks';

const NSS_SOFTOKEN = '/usr/lib/x86_64-linux-gnu/libsoftokn3.so';

/** QKMS_PKCS11_INIT_ARGS reaches C_Initialize: a module that needs it starts with it, and SoftHSM2 refuses it. */
describe('QKMS_PKCS11_INIT_ARGS', function () {
  this.timeout(60000);
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-init-args-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('NSS softoken, which needs its database directory in C_Initialize, lists its tokens only with it (qkms slots)', async function () {
    const hasCertutil = spawnSync('certutil', ['-H']).error === undefined;
    if (!fs.existsSync(NSS_SOFTOKEN) || !hasCertutil) return this.skip(); // needs Debian's libnss3 and libnss3-tools
    const db = path.join(dir, 'nssdb');
    fs.mkdirSync(db);
    fs.writeFileSync(path.join(dir, 'pw'), 'qkms-test-pw\n');
    const made = spawnSync('certutil', ['-N', '-d', `sql:${db}`, '-f', path.join(dir, 'pw')], { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    const env = { QKMS_DATA_DIR: path.join(dir, 'data'), QKMS_PKCS11_MODULE: NSS_SOFTOKEN, QKMS_PKCS11_PIN: 'qkms-test-pw' };
    const without = await runQkms(['slots'], env);
    assert.notEqual(without.code, 0);
    assert.match(without.stderr, /CKR_ARGUMENTS_BAD/, 'NSS refuses C_Initialize without its init string');
    // Ends with the directory, no quote: the character pkcs11js would drop is the one QKMS adds.
    const run = await qkmsJson(['slots'], { ...env, QKMS_PKCS11_INIT_ARGS: `certPrefix='' keyPrefix='' secmod='secmod.db' configdir=sql:${db}` });
    assert.ok(run.slots.some((s: { token?: { label: string } }) => s.token?.label === 'NSS Certificate DB'), JSON.stringify(run.slots));
  });

  it('SoftHSM2 answers an init string with CKR_ARGUMENTS_BAD, so the gateway stops at C_Initialize (with the softhsm2 profile, the configuration refuses it first)', async () => {
    const { token } = integration();
    const env = { QKMS_DATA_DIR: path.join(dir, 'softhsm-data'), SOFTHSM2_CONF: token.confPath, QKMS_PKCS11_MODULE: token.modulePath, QKMS_PKCS11_TOKEN_LABEL: token.label, QKMS_PKCS11_PIN: token.pin, QKMS_PKCS11_INIT_ARGS: 'configdir=/nowhere' };
    const refused = spawnGateway({ ...env, QKMS_HSM_PROFILE: 'softhsm2' });
    assert.notEqual(await refused.exited, 0);
    assert.match(refused.output(), /QKMS_PKCS11_INIT_ARGS is not for SoftHSM2/);
    const gw = spawnGateway({ ...env, QKMS_HSM_PROFILE: 'generic' });
    assert.notEqual(await gw.exited, 0);
    assert.match(gw.output(), /C_Initialize failed: CKR_ARGUMENTS_BAD/);
    assert.doesNotMatch(gw.output(), /nowhere/, 'the init string itself is never logged');
  });
});
