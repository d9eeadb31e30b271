import assert from 'node:assert/strict';
import path from 'node:path';
import { ConfigError, describeConfig, loadConfig } from '../../../src/config/load-config';

describe('Configuration', () => {
  it('has working defaults: loopback, ./data, the seed account, verenc ARNs, the embedded token', () => {
    const c = loadConfig({});
    assert.equal(c.port, 8080);
    assert.equal(c.host, '127.0.0.1');
    assert.equal(c.dataDir, path.resolve('./data'));
    assert.equal(c.accountId, '111122223333');
    assert.equal(c.region, 'us-east-1');
    assert.equal(c.arnFormat, 'verenc');
    assert.equal(c.pkcs11.modulePath, undefined);
    assert.equal(c.dataKeyWrap, undefined, 'unset: the token\'s best construction, found at start-up');
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.pkcs11));
  });

  it('converts and validates values', () => {
    const c = loadConfig({ QKMS_PORT: '9000', QKMS_ARN_FORMAT: 'aws', QKMS_REGION: 'eu-west-1', QKMS_PKCS11_MODULE: '/x.so', QKMS_PKCS11_PIN_FILE: '/pin' });
    assert.deepEqual([c.port, c.arnFormat, c.region, c.pkcs11.pinFile], [9000, 'aws', 'eu-west-1', '/pin']);
  });

  it('serves QKMS_REGION alone, or QKMS_REGIONS with QKMS_REGION first; several regions need AWS ARNs', () => {
    assert.deepEqual(loadConfig({}).regions, ['us-east-1']);
    assert.deepEqual(loadConfig({ QKMS_REGION: 'eu-west-1', QKMS_REGIONS: 'us-east-1,eu-west-1,us-east-1', QKMS_ARN_FORMAT: 'aws' }).regions, ['eu-west-1', 'us-east-1']);
    assert.deepEqual(loadConfig({ QKMS_REGIONS: 'us-east-1' }).regions, ['us-east-1'], 'one region needs no AWS ARNs');
    assert.throws(() => loadConfig({ QKMS_REGIONS: 'us-west-2,eu-west-1', QKMS_ARN_FORMAT: 'aws' }), (e: Error) => e instanceof ConfigError && /must include QKMS_REGION \(us-east-1\)/.test(e.message));
    assert.throws(() => loadConfig({ QKMS_REGIONS: 'us-east-1,eu-west-1' }), (e: Error) => e instanceof ConfigError && /needs QKMS_ARN_FORMAT=aws: verenc ARNs/.test(e.message));
    assert.throws(() => loadConfig({ QKMS_REGIONS: 'us-east-1, eu-west-1', QKMS_ARN_FORMAT: 'aws' }), (e: Error) => e instanceof ConfigError && /QKMS_REGIONS.*comma-separated list of regions/.test(e.message));
  });

  it("leaves the qkms CLI's own QKMS_ENDPOINT alone", () => {
    assert.doesNotThrow(() => loadConfig({ QKMS_ENDPOINT: 'http://127.0.0.1:8080' }));
  });

  it('reports every problem at once, including unknown QKMS_ names', () => {
    try {
      loadConfig({ QKMS_PORT: '-1', QKMS_ACCOUNT_ID: '12', QKMS_PROT: '1', OTHER: 'ignored' });
      assert.fail('expected ConfigError');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.problems.length, 3);
      assert.match(err.message, /QKMS_PORT/);
      assert.match(err.message, /QKMS_ACCOUNT_ID/);
      assert.match(err.message, /QKMS_PROT" is not allowed|QKMS_PROT is not allowed/);
    }
  });

  it('requires a PIN with an explicit module, refuses both PIN forms, and pairs the credential', () => {
    assert.throws(() => loadConfig({ QKMS_PKCS11_MODULE: '/x.so' }), ConfigError);
    assert.throws(() => loadConfig({ QKMS_PKCS11_PIN: '1234', QKMS_PKCS11_PIN_FILE: '/p' }), ConfigError);
    assert.throws(() => loadConfig({ QKMS_ACCESS_KEY_ID: 'AKIAEXAMPLEEXAMPLE' }), ConfigError);
  });

  it('picks the HSM profile (softhsm2 embedded, generic for a module) and takes its defaults', () => {
    const embedded = loadConfig({});
    assert.deepEqual([embedded.pkcs11.profile.name, embedded.pkcs11.sessions], ['softhsm2', 4]);
    const module = loadConfig({ QKMS_PKCS11_MODULE: '/x.so', QKMS_PKCS11_PIN: '1234' });
    assert.equal(module.pkcs11.profile.name, 'generic');
    const softhsm = loadConfig({ QKMS_PKCS11_MODULE: '/usr/lib/softhsm/libsofthsm2.so', QKMS_PKCS11_PIN: '1234' });
    assert.deepEqual([softhsm.pkcs11.profile.name, softhsm.pkcs11.recycleAfterSessionObjects], ['softhsm2', 50000]);
    const cloudhsm = loadConfig({ QKMS_PKCS11_MODULE: '/x.so', QKMS_PKCS11_PIN: '1234', QKMS_HSM_PROFILE: 'cloudhsm' });
    assert.deepEqual([cloudhsm.pkcs11.sessions, cloudhsm.pkcs11.profile.gcmIv], [16, 'hsm']);
    assert.equal(loadConfig({ QKMS_HSM_PROFILE: 'luna', QKMS_PKCS11_SESSIONS: '30' }).pkcs11.sessions, 30);
  });

  it('takes any data-key construction and profile it knows (the token is checked against them at start-up), and refuses others', () => {
    assert.equal(loadConfig({ QKMS_DATA_KEY_WRAP: 'AES_CBC_HMAC' }).dataKeyWrap, 'AES_CBC_HMAC');
    assert.throws(() => loadConfig({ QKMS_DATA_KEY_WRAP: 'AES_CBC' }), /QKMS_DATA_KEY_WRAP/);
    assert.throws(() => loadConfig({ QKMS_HSM_PROFILE: 'thales' }), /QKMS_HSM_PROFILE/);
  });

  it('takes QKMS_PKCS11_INIT_ARGS for a module that needs it, refuses it for SoftHSM2 (which answers CKR_ARGUMENTS_BAD), and never prints its value', () => {
    const nss = { QKMS_PKCS11_MODULE: '/usr/lib/x86_64-linux-gnu/libsoftokn3.so', QKMS_PKCS11_PIN: '1234', QKMS_PKCS11_INIT_ARGS: "configdir='sql:/var/lib/nss'" };
    assert.equal(loadConfig(nss).pkcs11.initArgs, "configdir='sql:/var/lib/nss'");
    assert.equal(loadConfig({}).pkcs11.initArgs, undefined);
    assert.throws(() => loadConfig({ QKMS_PKCS11_INIT_ARGS: 'x' }), /QKMS_PKCS11_INIT_ARGS is not for SoftHSM2/);
    assert.throws(() => loadConfig({ ...nss, QKMS_HSM_PROFILE: 'softhsm2' }), /CKR_ARGUMENTS_BAD/);
    assert.throws(() => loadConfig({ ...nss, QKMS_PKCS11_INIT_ARGS: '' }), ConfigError);
    assert.deepEqual(describeConfig(nss), { ...nss, QKMS_PKCS11_PIN: '***', QKMS_PKCS11_INIT_ARGS: '(set)' });
  });

  it('selects the PostgreSQL store by a postgres:// URL, and SQLite when unset', () => {
    assert.equal(loadConfig({}).storeUrl, undefined);
    const url = 'postgres://qkms:s3cret@db.internal:5432/qkms';
    assert.equal(loadConfig({ QKMS_STORE_URL: url }).storeUrl, url);
    assert.equal(loadConfig({ QKMS_STORE_URL: 'postgresql://db/qkms' }).storeUrl, 'postgresql://db/qkms');
    assert.throws(() => loadConfig({ QKMS_STORE_URL: 'mysql://qkms:s3cret@db/qkms' }), (e: Error) => /QKMS_STORE_URL must be a postgres:\/\/ or postgresql:\/\/ URL/.test(e.message) && !e.message.includes('s3cret'));
  });

  it('logs the store URL without its password', () => {
    assert.deepEqual(describeConfig({ QKMS_STORE_URL: 'postgres://qkms:s3cret@db.internal:5432/qkms' }), { QKMS_STORE_URL: 'postgres://qkms:***@db.internal:5432/qkms' });
    assert.deepEqual(describeConfig({ QKMS_STORE_URL: 'postgres://db.internal/qkms' }), { QKMS_STORE_URL: 'postgres://db.internal/qkms' });
  });

  it('prints secrets as *** in the start-up summary', () => {
    const s = describeConfig({ QKMS_PKCS11_PIN: '1234', QKMS_SECRET_ACCESS_KEY: 'abc', QKMS_PORT: '1' });
    assert.deepEqual(s, { QKMS_PKCS11_PIN: '***', QKMS_SECRET_ACCESS_KEY: '***', QKMS_PORT: '1' });
  });
});

describe('Removed settings', () => {
  it('name the setting, say why it is gone and what to do, instead of "not allowed"', () => {
    assert.throws(() => loadConfig({ QKMS_AUDIT_CHECKPOINT_SECONDS: '60' }), /QKMS_AUDIT_CHECKPOINT_SECONDS was removed \(every batch of audit records is signed by the HSM before its answers are sent\): delete it/);
  });
});

describe('config/gateway.example.env', () => {
  const text = require('node:fs').readFileSync(path.resolve(__dirname, '../../../config/gateway.example.env'), 'utf8') as string;

  it('is a valid configuration as written', () => {
    const env = Object.fromEntries(text.split('\n').filter((l) => /^QKMS_/.test(l)).map((l) => l.split(/=(.*)/s).slice(0, 2)));
    assert.doesNotThrow(() => loadConfig(env));
  });

  it('mentions every setting the schema knows', () => {
    const { configSchema } = require('../../../src/config/schema') as typeof import('../../../src/config/schema');
    const keys = (configSchema.describe().keys ?? {}) as Record<string, { flags?: { presence?: string } }>;
    const names = Object.keys(keys).filter((n) => keys[n].flags?.presence !== 'forbidden');
    assert.ok(names.length > 15);
    assert.deepEqual(names.filter((n) => !text.includes(n)), []);
  });
});

describe('Admin credential', () => {
  it('defaults to the public development credential on loopback', () => {
    const c = loadConfig({});
    assert.deepEqual(c.adminCredential, { accessKeyId: 'AKIAQKMSLOCALDEV0001', secretAccessKey: 'qkms-local-development-only', isDevelopmentDefault: true });
  });

  it('refuses to listen beyond loopback without a configured credential', () => {
    assert.throws(() => loadConfig({ QKMS_HOST: '0.0.0.0' }), /QKMS_ACCESS_KEY_ID and QKMS_SECRET_ACCESS_KEY are required/);
    const c = loadConfig({ QKMS_HOST: '0.0.0.0', QKMS_ACCESS_KEY_ID: 'AKIAPRODUCTION00001', QKMS_SECRET_ACCESS_KEY: 'a-long-production-secret' });
    assert.equal(c.adminCredential.isDevelopmentDefault, false);
  });

  it('refuses the published development credential beyond loopback however it is given', () => {
    const dev = { QKMS_ACCESS_KEY_ID: 'AKIAQKMSLOCALDEV0001', QKMS_SECRET_ACCESS_KEY: 'qkms-local-development-only' };
    for (const host of ['0.0.0.0', '::', '10.1.2.3', 'qkms.example.com']) {
      assert.throws(() => loadConfig({ QKMS_HOST: host, ...dev }), /published development key id AKIAQKMSLOCALDEV0001 and QKMS_SECRET_ACCESS_KEY is the published development secret/, host);
      assert.throws(() => loadConfig({ QKMS_HOST: host, ...dev, QKMS_SECRET_ACCESS_KEY: 'a-long-production-secret' }), /QKMS_ACCESS_KEY_ID is the published development key id/, host);
      assert.throws(() => loadConfig({ QKMS_HOST: host, ...dev, QKMS_ACCESS_KEY_ID: 'AKIAPRODUCTION00001' }), /QKMS_SECRET_ACCESS_KEY is the published development secret/, host);
    }
    // Given explicitly on loopback it is what the default would be: accepted.
    assert.equal(loadConfig({ QKMS_HOST: '127.0.0.1', ...dev }).adminCredential.accessKeyId, 'AKIAQKMSLOCALDEV0001');
  });
});
