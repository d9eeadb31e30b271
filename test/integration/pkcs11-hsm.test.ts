import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { CreateKeyCommand } from '@aws-sdk/client-kms';
import { objectLabel } from '../../src/domain/key-repository';
import type { ObjectRef } from '../../src/hsm/hsm';
import { HsmError } from '../../src/hsm/hsm-error';
import { HSM_PROFILES } from '../../src/hsm/profiles';
import { HsmThread } from '../../src/hsm/thread/hsm-thread';
import { PROBE_LABEL } from '../../src/hsm/pkcs11/capability-probes';
import { Pkcs11Hsm } from '../../src/hsm/pkcs11/pkcs11-hsm';
import { hsmContract } from '../support/hsm-contract';
import { integration } from '../support/integration-hooks';
import { startGateway } from '../support/harness';

hsmContract('Pkcs11Hsm on SoftHSM2', () => integration().hsm);

/** A new token object's reference: a random id, as key material gets. */
const ref = (label: string): ObjectRef => ({ id: crypto.randomBytes(16).toString('hex'), label });

describe('The HSM thread', () => {
  let thread: HsmThread | undefined;
  before(async () => {
    const { token } = integration();
    // mayFinalize false: the root hook's Pkcs11Hsm uses the module in this process too.
    const options = { modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, sessions: 2, integrityErrors: HSM_PROFILES.softhsm2.integrityErrors };
    thread = await HsmThread.open({ ...options, stuckAfterMs: 10000, mayFinalize: false });
  });
  after(async () => thread?.close());
  // Arguments and results cross a structured clone, errors a wire form (protocol.ts): same contract.
  hsmContract('HsmThread on SoftHSM2', () => thread!);
});

describe('Pkcs11Hsm on SoftHSM2: finding objects', () => {
  it('finds every object however many match: C_FindObjects is looped, not asked once for a bounded count', async function () {
    this.timeout(60000);
    const hsm = integration().hsm;
    const prefix = `qkms-test/many-${Date.now()}/`;
    const made = Array.from({ length: 150 }, (_, i) => ref(`${prefix}${i}`));
    for (const r of made) await hsm.generateMacKey(r);
    try {
      assert.equal((await hsm.listKeyObjects(prefix)).length, 150);
    } finally {
      for (const r of made) await hsm.destroyKey(r);
    }
  });

  it('an object destroyed between the search and the read of its label is left out of a listing, not an error', async () => {
    const { token } = integration();
    const prefix = `qkms-test/vanishing-${Date.now()}/`;
    const made = [ref(`${prefix}a`), ref(`${prefix}b`)];
    for (const r of made) await integration().hsm.generateKek(r);
    const faults = `${token.dir}/vanishing-faults.json`;
    fs.writeFileSync(faults, JSON.stringify([{ function: 'C_GetAttributeValue', ckr: 'CKR_OBJECT_HANDLE_INVALID', count: 1 }]));
    const hsm = await Pkcs11Hsm.open({ modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, sessions: 1, mayFinalize: false, faultsFile: faults });
    try {
      const listed = await hsm.listKeyObjects('qkms-test/');
      assert.ok(listed.length >= 1, 'the others are listed');
    } finally {
      await hsm.close();
      for (const r of made) await integration().hsm.destroyKey(r);
    }
  });

  it('finds, counts and destroys objects another process made before its own last token write (SoftHSM2 re-reads its index only at C_Initialize)', async function () {
    this.timeout(60000);
    const { token, hsm } = integration();
    // Another process makes a key object on the run's token, as another replica does.
    const makeElsewhere = (r: ObjectRef) => {
      const script = `require(${JSON.stringify(require.resolve('../../src/hsm/pkcs11/pkcs11-hsm'))}).Pkcs11Hsm.open(${JSON.stringify({ modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, sessions: 1 })})
        .then(async (h) => { await h.generateKek(${JSON.stringify(r)}); await h.close(); })`;
      const run = spawnSync(process.execPath, ['--require', require.resolve('tsx/cjs'), '-e', script], { env: { ...process.env, SOFTHSM2_CONF: token.confPath }, encoding: 'utf8' });
      assert.equal(run.status, 0, run.stderr);
    };
    const prefix = `qkms-test/elsewhere-${Date.now()}/`;
    const [x, y, x2, y2] = [ref(`${prefix}x`), ref(`${prefix}y`), ref(`${prefix}x2`), ref(`${prefix}y2`)];
    assert.equal(await hsm.countObjects(x), 0); // this process's index is current here
    makeElsewhere(x);
    await hsm.generateKek(y); // this process's own write: SoftHSM2 takes its index for current again
    const sealed = await hsm.encryptAesGcm(x, Buffer.from('made elsewhere'), Buffer.alloc(0));
    assert.equal((await hsm.decryptAesGcm(x, sealed.ciphertextAndTag, sealed.iv, Buffer.alloc(0))).toString(), 'made elsewhere');
    makeElsewhere(x2);
    await hsm.generateKek(y2);
    assert.equal(await hsm.destroyKey(x2), 1, 'a deletion destroys the object, never leaves it as an orphan');
    assert.equal(await hsm.countObjects(x2), 0);
    for (const r of [x, y, y2]) assert.equal(await hsm.destroyKey(r), 1);
  });

  it('opens the token while other processes write it: SoftHSM2 leaves such a token out of the slot list at C_Initialize, so the label is looked for again', async function () {
    this.timeout(120000);
    const { token } = integration();
    // Three processes at once, each opening the token, making and destroying an object, and closing, 15 times.
    const script = `const { Pkcs11Hsm } = require(${JSON.stringify(require.resolve('../../src/hsm/pkcs11/pkcs11-hsm'))});
      (async () => {
        for (let i = 0; i < 15; i++) {
          const h = await Pkcs11Hsm.open(${JSON.stringify({ modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, sessions: 1 })});
          const r = { id: require('node:crypto').randomBytes(16).toString('hex'), label: 'qkms-test/opening' };
          await h.generateKek(r);
          await h.destroyKey(r);
          await h.close();
        }
      })().catch((e) => { console.error(e.message, e.cause?.message ?? '', e.stack); process.exit(1); });`;
    const runs = await Promise.all([1, 2, 3].map(() => new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), '-e', script], { env: { ...process.env, SOFTHSM2_CONF: token.confPath } });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('exit', (code) => resolve({ code, stderr }));
    })));
    for (const run of runs) assert.equal(run.code, 0, run.stderr);
  });

  it('a listing warms the handle cache for ids one object carries, never for an id two carry', async () => {
    const { token } = integration();
    const prefix = `qkms-test/warm-${Date.now()}/`;
    const [single, doubled] = [ref(`${prefix}single`), ref(`${prefix}doubled`)];
    await integration().hsm.generateKek(single);
    await integration().hsm.generateKek(doubled);
    await integration().hsm.generateKek(doubled); // a second object with the same id
    const hsm = await Pkcs11Hsm.open({ modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, sessions: 1, mayFinalize: false });
    try {
      await hsm.listKeyObjects(prefix);
      const searches = () => hsm.callCounts().C_FindObjectsInit ?? 0;
      const before = searches();
      await hsm.encryptAesGcm(single, Buffer.from('x'), Buffer.alloc(0));
      assert.equal(searches(), before, 'no search for the first use after a listing');
      await assert.rejects(hsm.encryptAesGcm(doubled, Buffer.from('x'), Buffer.alloc(0)), (e: Error & { kind?: string }) => e.kind === 'key');
      assert.equal(searches(), before + 1, 'an ambiguous id was not cached: it is searched, and refused');
    } finally {
      await hsm.close();
      for (const r of [single, doubled]) await integration().hsm.destroyKey(r);
    }
  });

  it('opening the token indexes nothing: no search and no attribute read until an object is used', async () => {
    const { token } = integration();
    const hsm = await Pkcs11Hsm.open({ modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, sessions: 1, mayFinalize: false });
    try {
      const calls = hsm.callCounts();
      assert.deepEqual([calls.C_FindObjectsInit ?? 0, calls.C_GetAttributeValue ?? 0], [0, 0]);
    } finally {
      await hsm.close();
    }
  });
});

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
      const [kek, mac] = [objectLabel(keyId, 1, 'kek'), objectLabel(keyId, 1, 'mac')];
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

  it('destroys every session object it makes (data keys, unwrapped keys, ECDH secrets, data key pairs) before the call returns', async () => {
    const hsm = integration().hsm;
    const kek = ref(`qkms-test/ephemeral-${Date.now()}`);
    await hsm.generateKek(kek);
    const labels = { private: ref(`${kek.label}/ec`), public: ref(`${kek.label}/ec.pub`) };
    await hsm.generateKeyPair(labels, { family: 'EC', curve: 'P-256' }, 'KEY_AGREEMENT');
    const peer = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
    const peerPoint = Buffer.concat([Buffer.from([4]), Buffer.from(peer.x!, 'base64url'), Buffer.from(peer.y!, 'base64url')]);
    const before = hsm.callCounts();
    const { wrapped } = await hsm.generateWrappedDataKey(kek, 32, { mechanism: 'AES_KWP' });
    await hsm.unwrapDataKey(kek, wrapped);
    await hsm.deriveSharedSecret(labels.private, peerPoint);
    await hsm.generateDataKeyPair({ family: 'EC', curve: 'P-256' });
    const after = hsm.callCounts();
    const made = (fn: string) => (after[fn] ?? 0) - (before[fn] ?? 0);
    const objects = made('C_GenerateKey') + made('C_UnwrapKey') + made('C_DeriveKey') + 2 * (made('C_GenerateKeyPair') + made('C_GenerateKeyPairAsync'));
    assert.equal(objects, 5, 'one data key, one unwrapped key, one secret, one pair');
    assert.equal(made('C_DestroyObject'), objects);
    for (const label of [kek, labels.private, labels.public]) await hsm.destroyKey(label);
  });

  it('SoftHSM2 2.6.1 quirk: a KWP unwrap comes back zero-padded to a multiple of 8 (the blob header restores the length)', async () => {
    const { hsm } = integration();
    const kek = ref(`quirk/${Date.now()}/kek`);
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
    const kek = ref(`quirk/${Date.now()}/gcm-kek`);
    await hsm.generateKek(kek);
    await assert.rejects(
      hsm.generateWrappedDataKey(kek, 32, { mechanism: 'AES_GCM', aad: Buffer.from('aad') }),
      (e: Error & { ckr?: string }) => e.ckr === 'CKR_MECHANISM_INVALID',
    );
  });
});

describe('Pkcs11Hsm on SoftHSM2: a failure names the C_* function that failed', () => {
  /** A second instance over the test token with scripted faults (faults.ts), the failure caught. */
  const failure = async (rules: object[], act: (hsm: Pkcs11Hsm, kek: ObjectRef) => Promise<unknown>): Promise<HsmError> => {
    const { token } = integration();
    const kek = ref(`naming/${Date.now()}/kek`);
    await integration().hsm.generateKek(kek);
    const faults = `${token.dir}/naming-faults-${crypto.randomBytes(4).toString('hex')}.json`;
    fs.writeFileSync(faults, JSON.stringify(rules));
    const hsm = await Pkcs11Hsm.open({ modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, sessions: 1, mayFinalize: false, faultsFile: faults });
    try {
      const err = await act(hsm, kek).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof HsmError, `an HsmError, not ${String(err)}`);
      return err;
    } finally {
      await hsm.close();
      await integration().hsm.destroyKey(kek);
    }
  };
  const dataKey = (hsm: Pkcs11Hsm, kek: ObjectRef) => hsm.generateWrappedDataKey(kek, 32, { mechanism: 'AES_KWP' });

  it('C_GenerateKey failing inside GenerateDataKey (generate, read, wrap, destroy) is reported as C_GenerateKey, not C_WrapKey', async () => {
    const err = await failure([{ function: 'C_GenerateKey', ckr: 'CKR_ATTRIBUTE_TYPE_INVALID', count: 1 }], dataKey);
    assert.deepEqual([err.fn, err.ckr, err.message], ['C_GenerateKey', 'CKR_ATTRIBUTE_TYPE_INVALID', 'C_GenerateKey failed: CKR_ATTRIBUTE_TYPE_INVALID']);
  });

  it('a cleanup that fails after the real failure (C_DestroyObject after C_WrapKey) does not take its name', async () => {
    const err = await failure(
      [
        { function: 'C_WrapKey', ckr: 'CKR_FUNCTION_FAILED', count: 1 },
        { function: 'C_DestroyObject', ckr: 'CKR_FUNCTION_FAILED', count: 1 },
      ],
      dataKey,
    );
    assert.equal(err.fn, 'C_WrapKey');
  });

  it('a key that is not on the token is reported by the search that did not find it (C_FindObjects)', async () => {
    const err = await failure([], (hsm) => dataKey(hsm, ref('naming/absent')));
    assert.deepEqual([err.kind, err.fn], ['key', 'C_FindObjects']);
  });
});

describe('Pkcs11Hsm on SoftHSM2: capability discovery', () => {
  it('destroys a probe object a crash left behind (between the probe\'s create and destroy) at the next open, and nothing else', async () => {
    const { token, hsm } = integration();
    const leftover = { id: crypto.randomBytes(16).toString('hex'), label: PROBE_LABEL };
    const bystander = { id: crypto.randomBytes(16).toString('hex'), label: 'qkms-capability-probe-not' };
    await hsm.generateKek(leftover);
    await hsm.generateKek(bystander);
    const reopened = await Pkcs11Hsm.open({ modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, sessions: 1, mayFinalize: false });
    try {
      assert.equal(await reopened.countObjects(leftover), 0);
      assert.equal(await reopened.countObjects(bystander), 1);
      assert.equal(reopened.capabilities().checks['aes-token-keys'].ok, true);
    } finally {
      await reopened.destroyKey(bystander);
      await reopened.close();
    }
  });
});
