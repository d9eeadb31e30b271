import assert from 'node:assert/strict';
import { CreateKeyCommand, DependencyTimeoutException, GenerateDataKeyCommand, KeyUnavailableException } from '@aws-sdk/client-kms';
import { Pkcs11Hsm } from '../../src/hsm/pkcs11/pkcs11-hsm';
import { withFaultyGateway, type ChildGateway } from '../support/child-gateway';
import { integration } from '../support/integration-hooks';

/**
 * A thread stuck in a PKCS#11 call cannot be stopped: worker.terminate() does not reach native
 * code, so a replaced (abandoned) HSM thread stays inside the module until its call returns. While
 * one does, nothing may C_Finalize (or unload) the module under it. QKMS_FAULTS_FILE's delayMs
 * blocks in native code the same way (faults.ts), so these tests hang a call for real.
 */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How often the module ran a PKCS#11 function, from /metrics (the HSM thread reports each second). */
async function pkcs11Calls(gw: ChildGateway, fn: string): Promise<number> {
  await sleep(1100);
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  return Number(new RegExp(`^qkms_pkcs11_call_duration_seconds_count\\{function="${fn}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
}

/** When the gateway logged a line matching `message` (its JSON timestamp), or undefined. */
function loggedAt(gw: ChildGateway, message: RegExp): number | undefined {
  const line = gw.output().split('\n').find((l) => message.test(l));
  return line ? Date.parse(JSON.parse(line).timestamp as string) : undefined;
}

async function waitForLog(gw: ChildGateway, message: RegExp, ms: number): Promise<number> {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await sleep(50)) {
    const at = loggedAt(gw, message);
    if (at !== undefined) return at;
  }
  throw new Error(`no log line ${message} within ${ms} ms:\n${gw.output()}`);
}

const LEFT = /"message":"an abandoned HSM thread left the PKCS#11 module"/;
const RECYCLED = /"message":"PKCS#11 module re-initialised to free session objects"/;

describe('Abandoned HSM threads: no C_Finalize while one may be inside the module', function () {
  this.timeout(90000);

  it('heals a device error by reopening sessions without C_Finalize, and postpones a due recycle until the stuck thread has left', () =>
    withFaultyGateway({ QKMS_HSM_TIMEOUT_MS: '300', QKMS_PKCS11_RECYCLE_SESSION_OBJECTS: '3' }, async (gw, setFaults) => {
      const keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      const gdk = () => gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
      const HANG_MS = 9000;
      await setFaults([{ function: 'C_WrapKey', delayMs: HANG_MS, count: 1 }]);
      const finalizesBefore = await pkcs11Calls(gw, 'C_Finalize');

      const hungAt = Date.now();
      const hung = gdk();
      await sleep(150); // the thread is inside the hung C_WrapKey now
      // What the next thread meets (it reads the plan afresh): one device error, which the probe of
      // the token confirms (its C_GenerateRandom fails too), opening its circuit.
      await setFaults([{ function: 'C_WrapKey', ckr: 'CKR_DEVICE_ERROR', count: 1 }, { function: 'C_GenerateRandom', ckr: 'CKR_DEVICE_ERROR', count: 1 }], false);
      await assert.rejects(hung, DependencyTimeoutException);
      await waitForLog(gw, /HSM thread stuck; abandoned it/, 2000);
      await assert.rejects(gdk(), KeyUnavailableException);

      // The circuit heals while the abandoned thread is still inside its call, without C_Finalize.
      for (const deadline = Date.now() + 5000; ; await sleep(100)) {
        try {
          assert.ok((await gdk()).Plaintext);
          break;
        } catch (err) {
          if (Date.now() > deadline) throw err;
        }
      }
      assert.equal(loggedAt(gw, LEFT), undefined, 'the stuck thread was still inside when service came back');
      assert.ok(gw.output().split('\n').some((l) => /HSM token is back; circuit closed/.test(l) && /without C_Finalize/.test(l)), 'healed by reopening sessions');
      // More data keys than the recycle threshold: the recycle is due, and must wait.
      for (let i = 0; i < 4; i++) assert.ok((await gdk()).Plaintext);
      assert.equal(await pkcs11Calls(gw, 'C_Finalize'), finalizesBefore, 'no C_Finalize while the abandoned thread is inside the module');
      assert.equal(loggedAt(gw, LEFT), undefined, 'and it still was');
      assert.doesNotMatch(gw.output(), RECYCLED);

      // Once it has left, the postponed recycle runs (with C_Finalize) at the next call.
      const leftAt = await waitForLog(gw, LEFT, HANG_MS + 3000);
      assert.ok(leftAt - hungAt >= HANG_MS - 500, `the thread stayed inside its call (left after ${leftAt - hungAt} ms)`);
      assert.ok((await gdk()).Plaintext);
      const recycledAt = await waitForLog(gw, RECYCLED, 3000);
      assert.ok(recycledAt >= leftAt, 'the recycle came after the thread left');
      assert.ok((await pkcs11Calls(gw, 'C_Finalize')) > finalizesBefore);
      assert.ok((await gdk()).Plaintext);
    }));

  it('at shutdown, leaves the module initialised while an abandoned thread is inside, and exits once it has left', () =>
    withFaultyGateway({ QKMS_HSM_TIMEOUT_MS: '300' }, async (gw, setFaults) => {
      const keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      await setFaults([{ function: 'C_WrapKey', delayMs: 4000, count: 1 }]);
      await assert.rejects(gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' })), DependencyTimeoutException);
      await waitForLog(gw, /HSM thread stuck; abandoned it/, 2000);
      const stopping = gw.stop();
      await waitForLog(gw, /closing the HSM without C_Finalize/, 5000);
      assert.equal(await stopping, 0);
      assert.match(gw.output(), /"abandoned":1/);
    }));
});

describe('Bounded thread replacement', function () {
  this.timeout(90000);

  it('after QKMS_HSM_MAX_ABANDONED_THREADS stuck threads, replaces no more: KeyUnavailableException fast and /ready says to restart, also after they left', () =>
    withFaultyGateway({ QKMS_HSM_TIMEOUT_MS: '300', QKMS_HSM_MAX_ABANDONED_THREADS: '1' }, async (gw, setFaults) => {
      const keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      const gdk = () => gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
      // Every thread hangs in its first C_WrapKey (each reads the plan afresh).
      await setFaults([{ function: 'C_WrapKey', delayMs: 3000 }]);
      await assert.rejects(gdk(), DependencyTimeoutException); // thread 1 abandoned, thread 2 started
      await assert.rejects(gdk(), DependencyTimeoutException); // thread 2 stuck too: the budget of 1 is spent
      await waitForLog(gw, /stopped replacing stuck HSM threads/, 2000);
      assert.doesNotMatch(gw.output(), /HSM token unavailable; failing fast and reconnecting/, 'no reconnect is announced: none will come');
      await setFaults([], false);
      const started = Date.now();
      await assert.rejects(gdk(), KeyUnavailableException);
      assert.ok(Date.now() - started < 200, `failed fast (${Date.now() - started} ms)`);
      const ready = await fetch(`${gw.url}/ready`);
      assert.equal(ready.status, 503);
      const body = (await ready.json()) as { reasons: string[] };
      assert.ok(body.reasons.some((r) => /^token: .*restart the process/.test(r)), body.reasons.join());
      assert.equal((await fetch(`${gw.url}/health`)).status, 200, 'the process answers');
      // The stuck calls end; the circuit stays open: the module hung two threads, only a restart is sound.
      await waitForLog(gw, LEFT, 5000);
      await sleep(1500);
      await assert.rejects(gdk(), KeyUnavailableException);
      assert.equal((await fetch(`${gw.url}/ready`)).status, 503);
    }));
});

describe('Pkcs11Hsm sharing the module with another user in the process (mayFinalize: false)', () => {
  it('closes its sessions but leaves the module initialised, so the other user goes on', async () => {
    const { token, hsm } = integration();
    const second = await Pkcs11Hsm.open({ modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, sessions: 1, mayFinalize: false });
    assert.equal((await second.randomBytes(4)).length, 4);
    await second.close();
    assert.equal(second.callCounts().C_Finalize ?? 0, 0);
    assert.equal((await hsm.randomBytes(4)).length, 4, 'the shared module is still initialised');
    assert.equal(hsm.isUp, true);
  });
});
