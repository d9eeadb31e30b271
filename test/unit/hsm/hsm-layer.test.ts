import assert from 'node:assert/strict';
import { withDeadline } from '../../../src/hsm/deadline-hsm';
import { FaultInjectingHsm } from '../../../src/hsm/fault-injecting-hsm';
import { HsmError } from '../../../src/hsm/hsm-error';
import { classifyCkr, KNOWN_CKR } from '../../../src/hsm/pkcs11/ckr-table';
import { SessionPool } from '../../../src/hsm/pkcs11/session-pool';
import { HSM_PROFILES } from '../../../src/hsm/profiles';
import { FakeHsm, fullCapabilities, withRawRsaOaep } from '../../support/fake-hsm';
import { hsmContract } from '../../support/hsm-contract';

hsmContract('FakeHsm', () => new FakeHsm());
hsmContract('FakeHsm with OAEP-SHA-256 as raw RSA (as on SoftHSM2)', () => {
  const hsm = new FakeHsm();
  hsm.caps = withRawRsaOaep(fullCapabilities());
  return hsm;
});

describe('CKR classification', () => {
  it('classifies every known code and defaults the rest to internal', () => {
    for (const ckr of KNOWN_CKR) assert.notEqual(classifyCkr(ckr), 'internal', ckr);
    assert.equal(classifyCkr('CKR_SESSION_HANDLE_INVALID'), 'session');
    assert.equal(classifyCkr('CKR_DEVICE_REMOVED'), 'device');
    assert.equal(classifyCkr('CKR_KEY_HANDLE_INVALID'), 'key');
    assert.equal(classifyCkr('CKR_WRAPPED_KEY_INVALID'), 'integrity');
    assert.equal(classifyCkr('CKR_GENERAL_ERROR'), 'internal');
    assert.equal(classifyCkr(undefined), 'internal');
  });

  it("reads CKR_GENERAL_ERROR as a bad input only where the profile says so: SoftHSM2's C_Decrypt and C_UnwrapKey", () => {
    const softhsm = HSM_PROFILES.softhsm2.integrityErrors;
    assert.equal(classifyCkr('CKR_GENERAL_ERROR', 'C_Decrypt', softhsm), 'integrity');
    assert.equal(classifyCkr('CKR_GENERAL_ERROR', 'C_UnwrapKey', softhsm), 'integrity');
    assert.equal(classifyCkr('CKR_GENERAL_ERROR', 'C_Encrypt', softhsm), 'internal', 'not from another function');
    assert.equal(classifyCkr('CKR_DEVICE_ERROR', 'C_Decrypt', softhsm), 'device', 'not another code');
    for (const name of Object.keys(HSM_PROFILES).filter((n) => n !== 'softhsm2')) {
      // A device fault on a real HSM must stay a retryable 5xx (KMSInternalException), not a 400.
      assert.equal(classifyCkr('CKR_GENERAL_ERROR', 'C_Decrypt', HSM_PROFILES[name].integrityErrors), 'internal', name);
      assert.equal(classifyCkr('CKR_GENERAL_ERROR', 'C_UnwrapKey', HSM_PROFILES[name].integrityErrors), 'internal', name);
    }
    assert.equal(classifyCkr('CKR_ENCRYPTED_DATA_INVALID', 'C_Decrypt', HSM_PROFILES.generic.integrityErrors), 'integrity', 'the standard codes on every profile');
  });
});

describe('SessionPool', () => {
  it('lends each session to one caller at a time and queues the rest', async () => {
    const pool = new SessionPool(['s1'], (s) => s);
    const order: string[] = [];
    let release!: () => void;
    const first = pool.use(async (s) => {
      order.push(`a:${s}`);
      await new Promise<void>((r) => (release = r));
    }, () => false);
    const second = pool.use(async (s) => order.push(`b:${s}`), () => false);
    assert.deepEqual(pool.stats, { size: 1, inUse: 1, waiters: 1 });
    release();
    await Promise.all([first, second]);
    assert.deepEqual(order, ['a:s1', 'b:s1']);
    assert.deepEqual(pool.stats, { size: 1, inUse: 0, waiters: 0 });
  });

  it('replaces a session the error shows to be broken', async () => {
    const pool = new SessionPool(['old'], () => 'new');
    await assert.rejects(pool.use(() => { throw new HsmError('session', 'C_Encrypt', 'CKR_SESSION_HANDLE_INVALID'); }, (e) => e instanceof HsmError && e.kind === 'session'));
    assert.equal(await pool.use((s) => s, () => false), 'new');
  });
});

describe('Deadline and fault injection', () => {
  it('answers HsmError timeout when a call outlasts the deadline, and passes fast calls through', async () => {
    const faults = new FaultInjectingHsm(new FakeHsm());
    const hsm = withDeadline(faults.hsm, 50);
    assert.equal((await hsm.randomBytes(4)).length, 4);
    faults.add({ method: 'randomBytes', times: 1, delayMs: 200 });
    await assert.rejects(hsm.randomBytes(4), (e: unknown) => e instanceof HsmError && e.kind === 'timeout');
  });

  it('gives a listing of the whole token (start-up reconciliation) the slow calls\' deadline, not the per-request one', async () => {
    const faults = new FaultInjectingHsm(new FakeHsm());
    const hsm = withDeadline(faults.hsm, 50);
    faults.add({ method: 'listKeyObjects', times: 1, delayMs: 200 });
    assert.deepEqual(await hsm.listKeyObjects('qkms/'), []);
    faults.add({ method: 'countObjects', times: 1, delayMs: 200 });
    await assert.rejects(hsm.countObjects({ id: '01', label: 'x' }), (e: unknown) => e instanceof HsmError && e.kind === 'timeout');
  });

  it('injects scripted failures a given number of times', async () => {
    const faults = new FaultInjectingHsm(new FakeHsm());
    faults.add({ method: '*', times: 2, fail: { kind: 'device', ckr: 'CKR_DEVICE_ERROR' } });
    await assert.rejects(faults.hsm.randomBytes(1), HsmError);
    await assert.rejects(faults.hsm.randomBytes(1), HsmError);
    assert.equal((await faults.hsm.randomBytes(1)).length, 1);
  });

  it('reports health as down when the health probe itself times out', async () => {
    const faults = new FaultInjectingHsm(new FakeHsm());
    faults.add({ method: 'health', times: 1, delayMs: 200 });
    assert.equal((await withDeadline(faults.hsm, 50).health()).isUp, false);
  });
});
