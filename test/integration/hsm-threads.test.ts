import assert from 'node:assert/strict';
import { CreateKeyCommand, DecryptCommand, GenerateDataKeyCommand, GenerateRandomCommand } from '@aws-sdk/client-kms';
import { HSM_PROFILES } from '../../src/hsm/profiles';
import { HsmThreads } from '../../src/hsm/thread/hsm-threads';
import { withFaultyGateway, type ChildGateway } from '../support/child-gateway';
import { hsmContract } from '../support/hsm-contract';
import { integration } from '../support/integration-hooks';

/**
 * Several HSM threads on one PKCS#11 module (QKMS_HSM_THREADS): calls overlap, which is what a
 * network HSM's round trips need, and C_Finalize by one thread (a recycle) never runs while another
 * is inside the module; the others reconnect after it (module-lock.ts).
 */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function metric(gw: ChildGateway, pattern: RegExp): Promise<number> {
  await sleep(1100); // the HSM threads report each second
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  return Number(pattern.exec(text)?.[1] ?? 0);
}
const finalizes = (gw: ChildGateway) => metric(gw, /^qkms_pkcs11_call_duration_seconds_count\{function="C_Finalize"\} (\d+)$/m);

describe('Several HSM threads (HsmThreads)', function () {
  this.timeout(90000);

  describe('the Hsm contract over three threads', () => {
    let threads: HsmThreads | undefined;
    before(async () => {
      const { token } = integration();
      // mayFinalize false: the root hook's Pkcs11Hsm uses the module in this process too, outside the threads' lock.
      const options = { modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, sessions: 3, integrityErrors: HSM_PROFILES.softhsm2.integrityErrors };
      threads = await HsmThreads.open({ ...options, stuckAfterMs: 10000, mayFinalize: false, threads: 3 });
    });
    after(async () => threads?.close());
    hsmContract('HsmThreads (3) on SoftHSM2', () => threads!);

    it('spreads concurrent calls over the threads, each with its share of the sessions', async () => {
      await Promise.all(Array.from({ length: 30 }, () => threads!.randomBytes(16)));
      assert.equal(threads!.stats().sessions.size, 3);
    });
  });

  it('overlaps calls on a slow device: 16 GenerateDataKey with every PKCS#11 call taking 10 ms end well before one thread could serve them', () =>
    withFaultyGateway({ QKMS_HSM_THREADS: '4' }, async (gw, setFaults) => {
      const keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      await setFaults([{ function: '*', delayMs: 10 }]);
      const started = performance.now();
      await Promise.all(Array.from({ length: 16 }, () => gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }))));
      const ms = performance.now() - started;
      // Six calls each (generate, read, wrap, destroy, MAC init and sign): one thread needs ≥ 960 ms; four about 240.
      assert.ok(ms < 700, `16 GenerateDataKey took ${Math.round(ms)} ms: the calls did not overlap`);
      await setFaults([]);
    }));

  it('recycles the module under load from four threads: each recycle waits for the others to leave, they reconnect, and every data key decrypts', () =>
    withFaultyGateway({ QKMS_HSM_THREADS: '4', QKMS_PKCS11_RECYCLE_SESSION_OBJECTS: '20' }, async (gw) => {
      const keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      const before = await finalizes(gw);
      const roundTrip = async () => {
        const made = await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
        const opened = await gw.client.send(new DecryptCommand({ CiphertextBlob: made.CiphertextBlob }));
        assert.deepEqual(Buffer.from(opened.Plaintext!), Buffer.from(made.Plaintext!));
      };
      for (let round = 0; round < 10; round++) await Promise.all(Array.from({ length: 16 }, roundTrip));
      const recycles = gw.output().split('\n').filter((l) => l.includes('"message":"PKCS#11 module re-initialised to free session objects"')).length;
      // 320 session objects at 20 a recycle: a dozen or more, each a C_Finalize.
      assert.ok(recycles >= 8, `${recycles} recycles`);
      assert.ok((await finalizes(gw)) - before >= recycles);
      assert.doesNotMatch(gw.output(), /HSM token unavailable|"level":"error"/);
    }));

  it('a slow call on one thread holds neither the other threads nor a recycle that would finalise the module under it', () =>
    withFaultyGateway({ QKMS_HSM_THREADS: '2', QKMS_PKCS11_RECYCLE_SESSION_OBJECTS: '3', QKMS_HSM_TIMEOUT_MS: '10000' }, async (gw, setFaults) => {
      const keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      const gdk = () => gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
      const before = await finalizes(gw);
      await setFaults([{ function: 'C_WrapKey', delayMs: 4000, count: 1 }]);
      const slow = gdk();
      await sleep(200); // one thread is inside the slow C_WrapKey now
      await setFaults([]); // each thread reads the plan (and counts) for itself: the other one must not hold too
      const started = performance.now();
      for (let i = 0; i < 8; i++) await gdk(); // on the other thread; a recycle falls due and must wait
      assert.ok(performance.now() - started < 1500, 'the other thread waited for the slow call');
      assert.equal(await finalizes(gw), before, 'C_Finalize ran while a thread was inside a call');
      await slow;
      for (let i = 0; i < 4; i++) await gdk(); // the recycle runs now that no thread is inside
      assert.ok((await finalizes(gw)) > before, 'the postponed recycle never ran');
    }));

  it('refuses requests past QKMS_HSM_MAX_QUEUE outstanding HSM calls with ThrottlingException (never a 5xx: the audit trail’s own calls are not refused) and serves the rest', () =>
    withFaultyGateway({ QKMS_HSM_THREADS: '1', QKMS_HSM_MAX_QUEUE: '2' }, async (gw, setFaults) => {
      await setFaults([{ function: 'C_GenerateRandom', delayMs: 40 }]);
      // The harness's client makes one attempt: each answer is the gateway's first, not a retry's.
      const outcomes = await Promise.all(Array.from({ length: 10 }, () => gw.client.send(new GenerateRandomCommand({ NumberOfBytes: 8 })).then(() => 'ok', (err: Error) => err)));
      // Not a modelled KMS error: the SDK gives it by name (and retries it with backoff when allowed to).
      const isThrottled = (o: unknown) => o instanceof Error && o.name === 'ThrottlingException';
      const throttled = outcomes.filter(isThrottled);
      assert.ok(outcomes.includes('ok'));
      assert.ok(throttled.length >= 5, `only ${throttled.length} throttled`);
      assert.deepEqual(outcomes.filter((o) => o !== 'ok' && !isThrottled(o)), []);
      assert.match((throttled[0] as Error).message, /HSM is busy/);
      await setFaults([]);
    }));
});
