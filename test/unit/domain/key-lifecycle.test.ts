import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { RETRY_FIRST_MS, RetryBackoff, runDueLifecycleWork, STALE_INTENT_MS } from '../../../src/domain/key-lifecycle';
import { rotateKeyMaterial } from '../../../src/domain/key-material';
import { reconcileWithToken, surveyToken } from '../../../src/domain/token-reconciliation';
import { LocalCoordination } from '../../../src/store/local-coordination';
import { FaultInjectingHsm } from '../../../src/hsm/fault-injecting-hsm';
import { cancelKeyDeletion } from '../../../src/operations/cancel-key-deletion';
import { createKey } from '../../../src/operations/create-key';
import { disableKeyRotation } from '../../../src/operations/disable-key-rotation';
import { enableKeyRotation } from '../../../src/operations/enable-key-rotation';
import { rotateKeyOnDemand } from '../../../src/operations/rotate-key-on-demand';
import { scheduleKeyDeletion } from '../../../src/operations/schedule-key-deletion';
import { KMSInvalidStateException, LimitExceededException } from '../../../src/errors/kms-errors';
import { createLogger } from '../../../src/logging/logger';
import { operationContext, unitDeps } from '../../support/unit-deps';

type Deps = Awaited<ReturnType<typeof unitDeps>>;

async function newKey(deps: Deps): Promise<string> {
  const out = (await createKey.handle({}, operationContext(deps))) as { KeyMetadata: { KeyId: string } };
  return out.KeyMetadata.KeyId;
}

/** Every object id the store's material rows own, and every object id on the fake token. */
async function ids(deps: Deps): Promise<{ owned: string[]; onToken: string[] }> {
  const owned = (await deps.keys.listMaterials()).flatMap((m) => Object.values(m.objects).map((r) => r.id)).sort();
  const onToken = (await deps.fake.listKeyObjects('qkms/')).map((r) => r.id).sort();
  return { owned, onToken };
}

describe('Key material: intents, reserved versions, rollback', () => {
  it('concurrent rotations of one key get distinct versions and lose no material', async () => {
    const deps = await unitDeps();
    const faults = new FaultInjectingHsm(deps.fake);
    const slow = { ...deps, hsm: faults.hsm };
    const key = (await deps.keys.getKey(await newKey(deps)))!;
    faults.add({ method: 'generateKek', times: 3, delayMs: 20 }); // lets the rotations interleave
    const versions = await Promise.all([1, 2, 3].map(() => rotateKeyMaterial(slow, key, { rotationType: 'ON_DEMAND' })));
    assert.deepEqual([...versions].sort(), [2, 3, 4]);
    assert.deepEqual((await ids(deps)).onToken, (await ids(deps)).owned, 'every object is owned, every owned object is there');
    assert.equal((await deps.keys.getKey(key.keyId))!.currentMaterialVersion, 4, 'the newest version is current whatever order they finished in');
  });

  it('a failed rotation destroys what it made and its version number is never used again', async () => {
    const deps = await unitDeps();
    const faults = new FaultInjectingHsm(deps.fake);
    const key = (await deps.keys.getKey(await newKey(deps)))!;
    faults.add({ method: 'generateMacKey', times: 1, fail: { kind: 'device', ckr: 'CKR_DEVICE_ERROR' } });
    await assert.rejects(rotateKeyMaterial({ ...deps, hsm: faults.hsm }, key, { rotationType: 'ON_DEMAND' }));
    assert.deepEqual((await ids(deps)).onToken, (await ids(deps)).owned, 'the KEK made before the failure is gone');
    assert.deepEqual(await deps.keys.listIntents(), []);
    assert.equal(await rotateKeyMaterial(deps, key, { rotationType: 'ON_DEMAND' }), 3, 'version 2 stays reserved');
  });

  it('start-up reconciliation rolls back an intent a crash left, with its objects, and reports foreign objects without touching them', async () => {
    const deps = await unitDeps();
    const key = (await deps.keys.getKey(await newKey(deps)))!;
    // What a crash after the KEK of version 2 was made leaves: an intent and one of its objects.
    const intent = await deps.keys.reserveVersion(key.keyId, { rotationType: 'ON_DEMAND', objectIds: { kek: 'aa'.repeat(16), mac: 'bb'.repeat(16) }, createdAt: deps.clock() });
    assert.ok(typeof intent !== 'string');
    await deps.fake.generateKek(intent.objects.kek);
    const foreign = { id: 'cc'.repeat(16), label: 'qkms/someone-else/1/kek' };
    await deps.fake.generateKek(foreign);
    const result = await reconcileWithToken({ ...deps, owners: new LocalCoordination() });
    assert.equal(result.rolledBack, 1);
    assert.deepEqual(result.orphaned, [foreign]);
    assert.equal(await deps.fake.countObjects(intent.objects.kek), 0);
    assert.equal(await deps.fake.countObjects(foreign), 1, 'an orphan is reported, not destroyed');
    assert.deepEqual(await deps.keys.listIntents(), []);
  });

  it('start-up reconciliation that cannot roll one intent back (the token refuses the destroy) leaves it to the scheduler and goes on', async () => {
    const deps = await unitDeps();
    const key = (await deps.keys.getKey(await newKey(deps)))!;
    const intent = await deps.keys.reserveVersion(key.keyId, { rotationType: 'ON_DEMAND', objectIds: { kek: 'a1'.repeat(16), mac: 'b1'.repeat(16) }, createdAt: deps.clock() });
    assert.ok(typeof intent !== 'string');
    await deps.fake.generateKek(intent.objects.kek);
    const faults = new FaultInjectingHsm(deps.fake);
    faults.add({ method: 'destroyKey', times: 1, fail: { kind: 'config', ckr: 'CKR_TOKEN_WRITE_PROTECTED' } });
    const result = await reconcileWithToken({ ...deps, hsm: faults.hsm, owners: new LocalCoordination() });
    assert.equal(result.rolledBack, 0);
    assert.deepEqual((await deps.keys.listIntents()).map((i) => i.version), [2], 'kept for the stale-intent sweep');
    assert.deepEqual(result.orphaned, [], 'its objects are still owned by the intent');
  });

  it('the orphan warning names the command that exists (qkms orphans)', async () => {
    const deps = await unitDeps();
    await deps.fake.generateKek({ id: 'c1'.repeat(16), label: 'qkms/someone-else/1/kek' });
    let out = '';
    const logger = createLogger({ level: 'info', stream: new Writable({ write: (chunk, _enc, done) => ((out += String(chunk)), done()) }) });
    await reconcileWithToken({ ...deps, logger, owners: new LocalCoordination() });
    const named = [...out.matchAll(/`(qkms [^`]*)`/g)].map((m) => m[1]);
    assert.ok(named.length > 0);
    for (const command of named) assert.match(command, /^qkms orphans( --destroy)?$/);
  });

  it('an id several objects carry is ambiguous: the key is refused (KeyUnavailable), never guessed', async () => {
    const deps = await unitDeps();
    const keyId = await newKey(deps);
    const [material] = await deps.keys.listMaterialsOf(keyId);
    deps.fake.duplicate(material.objects.kek);
    assert.deepEqual((await surveyToken(deps.keys, deps.fake)).ambiguous.map((a) => a.count), [2]);
    await assert.rejects(deps.envelope.encrypt(material, Buffer.from('x'), Buffer.alloc(0)), (e: Error & { kind?: string }) => e.kind === 'key' && /refusing|2 objects/.test(String(e.cause)));
  });

  it('counts rotations in flight against the on-demand quota, in the store', async () => {
    const deps = await unitDeps();
    const key = (await deps.keys.getKey(await newKey(deps)))!;
    for (let i = 0; i < 24; i++) await rotateKeyMaterial(deps, key, { rotationType: 'ON_DEMAND' });
    const inFlight = await deps.keys.reserveVersion(key.keyId, { rotationType: 'ON_DEMAND', objectIds: { kek: 'dd'.repeat(16), mac: 'ee'.repeat(16) }, createdAt: deps.clock(), onDemandLimit: 25 });
    assert.ok(typeof inFlight !== 'string', 'the 25th is reserved');
    await assert.rejects(rotateKeyOnDemand.handle({ KeyId: key.keyId }, operationContext(deps)), LimitExceededException);
  });
});

describe('Scheduled key work', () => {
  it('a cancel after the scheduler claimed the key is refused, and the deletion completes', async () => {
    let now = new Date('2026-11-29T12:00:00Z');
    const deps = { ...(await unitDeps()), clock: () => now };
    const keyId = await newKey(deps);
    await scheduleKeyDeletion.handle({ KeyId: keyId, PendingWindowInDays: 7 }, operationContext(deps));
    now = new Date(now.getTime() + 8 * 86_400_000);
    assert.equal(await deps.keys.beginDeletion(keyId, now), true);
    await assert.rejects(cancelKeyDeletion.handle({ KeyId: keyId }, operationContext(deps)), (e: unknown) => e instanceof KMSInvalidStateException && /deletion has begun/.test(e.message));
    assert.deepEqual((await runDueLifecycleWork(deps)).deleted, [keyId]);
    assert.equal(await deps.keys.getKey(keyId), undefined);
    assert.deepEqual((await ids(deps)).onToken, []);
  });

  it('one key whose destroy keeps failing neither stops the others nor is retried before its backoff', async () => {
    let now = new Date('2026-11-29T12:00:00Z');
    const base = await unitDeps();
    const faults = new FaultInjectingHsm(base.fake);
    const failures: string[] = [];
    const deps = { ...base, clock: () => now, onFailure: (w: string) => failures.push(w) };
    const [stuck, other] = [await newKey(deps), await newKey(deps)];
    for (const k of [stuck, other]) await scheduleKeyDeletion.handle({ KeyId: k, PendingWindowInDays: 7 }, operationContext(deps));
    now = new Date(now.getTime() + 8 * 86_400_000);
    faults.add({ method: 'destroyKey', times: 1, fail: { kind: 'device', ckr: 'CKR_DEVICE_ERROR' } }); // the first key's first destroy
    const backoff = new RetryBackoff();
    const first = await runDueLifecycleWork({ ...deps, hsm: faults.hsm }, backoff);
    assert.deepEqual(first.deleted, [other]);
    assert.deepEqual(failures, ['deletion']);
    assert.ok((await deps.keys.getKey(stuck))?.deletionStartedAt, 'claimed, so a cancel cannot race the retry');
    assert.deepEqual((await runDueLifecycleWork({ ...deps, hsm: faults.hsm }, backoff)).deleted, [], 'not retried within its backoff');
    now = new Date(now.getTime() + RETRY_FIRST_MS);
    assert.deepEqual((await runDueLifecycleWork({ ...deps, hsm: faults.hsm }, backoff)).deleted, [stuck]);
    assert.deepEqual((await ids(deps)).onToken, []);
  });

  it('a key whose failed work is no longer due (its rotation disabled) leaves the backoff gauge', async () => {
    let now = new Date('2026-11-29T12:00:00Z');
    const base = { ...(await unitDeps()), clock: () => now };
    const faults = new FaultInjectingHsm(base.fake);
    const deps = { ...base, hsm: faults.hsm };
    const keyId = await newKey(deps);
    await deps.keys.setRotation(keyId, { periodDays: 90, nextRotationDate: new Date(now.getTime() + 1000) });
    now = new Date(now.getTime() + 2000);
    faults.add({ method: 'generateKek', times: 1, fail: { kind: 'device', ckr: 'CKR_DEVICE_ERROR' } });
    const backoff = new RetryBackoff();
    await runDueLifecycleWork(deps, backoff);
    assert.equal(backoff.size, 1);
    await deps.keys.setRotation(keyId, null); // DisableKeyRotation
    now = new Date(now.getTime() + RETRY_FIRST_MS);
    await runDueLifecycleWork(deps, backoff);
    assert.equal(backoff.size, 0, 'qkms_scheduler_keys_in_backoff would otherwise stay at 1 until a restart');
  });

  it('an automatic rotation moves its date in the same transaction: run twice, it rotates once', async () => {
    let now = new Date('2026-11-29T12:00:00Z');
    const deps = { ...(await unitDeps()), clock: () => now };
    const keyId = await newKey(deps);
    await deps.keys.setRotation(keyId, { periodDays: 90, nextRotationDate: new Date(now.getTime() + 1000) });
    now = new Date(now.getTime() + 2000);
    assert.deepEqual((await runDueLifecycleWork(deps)).rotated, [keyId]);
    assert.deepEqual((await runDueLifecycleWork(deps)).rotated, []);
    const key = (await deps.keys.getKey(keyId))!;
    assert.equal(key.currentMaterialVersion, 2);
    assert.equal(key.rotation!.nextRotationDate.getTime(), now.getTime() + 90 * 86_400_000);
  });

  it('rolls back an intent left stale by a failure it could not undo, without waiting for a restart', async () => {
    let now = new Date('2026-11-29T12:00:00Z');
    const deps = { ...(await unitDeps()), clock: () => now };
    const key = (await deps.keys.getKey(await newKey(deps)))!;
    const intent = await deps.keys.reserveVersion(key.keyId, { rotationType: 'ON_DEMAND', objectIds: { kek: 'ab'.repeat(16), mac: 'cd'.repeat(16) }, createdAt: now });
    assert.ok(typeof intent !== 'string');
    await deps.fake.generateKek(intent.objects.kek);
    assert.equal((await runDueLifecycleWork(deps)).rolledBack, 0, 'a fresh intent may belong to a call in flight');
    now = new Date(now.getTime() + STALE_INTENT_MS);
    assert.equal((await runDueLifecycleWork(deps)).rolledBack, 1);
    assert.equal(await deps.fake.countObjects(intent.objects.kek), 0);
  });
});

describe('Rotation settings changed while an automatic rotation is being made', () => {
  /** The scheduler's rotation is due and its objects are being made (slowly) when the request lands. */
  async function duringAutomaticRotation(change: (deps: Deps, keyId: string) => Promise<unknown>): Promise<{ deps: Deps; keyId: string }> {
    let now = new Date('2026-11-29T12:00:00Z');
    const deps = { ...(await unitDeps()), clock: () => now };
    const keyId = await newKey(deps);
    await deps.keys.setRotation(keyId, { periodDays: 365, nextRotationDate: new Date(now.getTime() + 1000) });
    now = new Date(now.getTime() + 2000);
    const slow = new FaultInjectingHsm(deps.fake);
    slow.add({ method: 'generateMacKey', times: 1, delayMs: 30 });
    const run = runDueLifecycleWork({ ...deps, hsm: slow.hsm });
    await new Promise((r) => setTimeout(r, 10));
    await change(deps, keyId);
    assert.deepEqual((await run).rotated, [keyId]);
    return { deps, keyId };
  }

  it('an acknowledged DisableKeyRotation stays disabled', async () => {
    const { deps, keyId } = await duringAutomaticRotation((d, k) => disableKeyRotation.handle({ KeyId: k }, operationContext(d)));
    assert.equal((await deps.keys.getKey(keyId))!.rotation, undefined);
  });

  it('an acknowledged EnableKeyRotation keeps the period and date it set', async () => {
    const { deps, keyId } = await duringAutomaticRotation((d, k) => enableKeyRotation.handle({ KeyId: k, RotationPeriodInDays: 90 }, operationContext(d)));
    const key = (await deps.keys.getKey(keyId))!;
    assert.equal(key.rotation?.periodDays, 90);
    assert.equal(key.rotation?.nextRotationDate.getTime(), deps.clock().getTime() + 90 * 86_400_000);
  });
});

describe('The stale-intent sweep against a call still in flight', () => {
  /**
   * The sweep decides "stale" by the wall clock, so a step forward (NTP, a VM resumed) makes the
   * intent of a CreateKey still running look abandoned. On the HSM thread the sweep's destroy
   * queues behind the slow call, so the call's activation can come first: it must not commit
   * objects the sweep is about to destroy (an acknowledged key with no material).
   */
  it('once the sweep has begun rolling an intent back, the call that made it cannot activate it', async () => {
    let now = new Date('2026-11-29T12:00:00Z');
    const base = { ...(await unitDeps()), clock: () => now };
    const creating = new FaultInjectingHsm(base.fake);
    creating.add({ method: 'generateMacKey', times: 1, delayMs: 30 });
    const sweeping = new FaultInjectingHsm(base.fake);
    sweeping.add({ method: 'destroyKey', times: 1, delayMs: 60 }); // queued behind the slow call
    const answer = createKey.handle({}, operationContext({ ...base, hsm: creating.hsm })).then(
      (out) => out,
      (err: unknown) => err,
    );
    await new Promise((r) => setTimeout(r, 10)); // the KEK is made, the MAC key is being made
    now = new Date(now.getTime() + STALE_INTENT_MS + 60_000);
    const swept = await runDueLifecycleWork({ ...base, hsm: sweeping.hsm });
    await answer;
    assert.equal(swept.rolledBack, 1);
    const { owned, onToken } = await ids(base);
    assert.deepEqual(onToken, owned, 'every object a version owns is on the token (and nothing else is)');
  });

  it('a call that finishes after the sweep has rolled its intent back destroys what it made (no orphan)', async () => {
    let now = new Date('2026-11-29T12:00:00Z');
    const base = { ...(await unitDeps()), clock: () => now };
    const creating = new FaultInjectingHsm(base.fake);
    creating.add({ method: 'generateMacKey', times: 1, delayMs: 40 });
    const answer = createKey.handle({}, operationContext({ ...base, hsm: creating.hsm })).then(
      (out) => out,
      (err: unknown) => err,
    );
    await new Promise((r) => setTimeout(r, 10));
    now = new Date(now.getTime() + STALE_INTENT_MS + 60_000);
    assert.equal((await runDueLifecycleWork(base)).rolledBack, 1);
    assert.ok((await answer) instanceof Error, 'its intent is gone: no activation');
    const { owned, onToken } = await ids(base);
    assert.deepEqual(onToken, owned, 'the MAC key made after the sweep is destroyed too');
  });

  it('an intent the sweep listed but that was activated before its turn is left alone (its objects are an acknowledged key now)', async () => {
    let now = new Date('2026-11-29T12:00:00Z');
    const base = { ...(await unitDeps()), clock: () => now };
    // First in the sweep's list: an intent a timeout left, with one object.
    const older = (await base.keys.getKey(await newKey(base)))!;
    const left = await base.keys.reserveVersion(older.keyId, { rotationType: 'ON_DEMAND', objectIds: { kek: 'a2'.repeat(16), mac: 'b2'.repeat(16) }, createdAt: now });
    assert.ok(typeof left !== 'string');
    await base.fake.generateKek(left.objects.kek);
    const creating = new FaultInjectingHsm(base.fake);
    creating.add({ method: 'generateMacKey', times: 1, delayMs: 30 });
    const sweeping = new FaultInjectingHsm(base.fake);
    sweeping.add({ method: 'destroyKey', times: 1, delayMs: 60 }); // the first intent's rollback is slow
    const answer = createKey.handle({}, operationContext({ ...base, hsm: creating.hsm })).then(
      (out) => out,
      (err: unknown) => err,
    );
    await new Promise((r) => setTimeout(r, 10));
    now = new Date(now.getTime() + STALE_INTENT_MS + 60_000);
    await runDueLifecycleWork({ ...base, hsm: sweeping.hsm });
    assert.ok(!((await answer) instanceof Error), 'CreateKey activated while the sweep was busy with the first intent');
    const { owned, onToken } = await ids(base);
    assert.deepEqual(onToken, owned, 'every object a version owns is on the token (and nothing else is)');
  });
});

describe('Scheduled key work against a failing store or a doubled object', () => {
  it('an automatic rotation never rotates twice for one due date, even if the store fails after it (the date moves with the activation)', async () => {
    let now = new Date('2026-11-29T12:00:00Z');
    const base = { ...(await unitDeps()), clock: () => now };
    const keyId = await newKey(base);
    await base.keys.setRotation(keyId, { periodDays: 90, nextRotationDate: new Date(now.getTime() + 1000) });
    now = new Date(now.getTime() + 2000);
    // A store whose separate "next rotation date" write fails, as a crash between two writes would leave it.
    const keys = new Proxy(base.keys, {
      get: (target, prop, receiver) => (prop === 'setRotation' ? async () => { throw new Error('disk full'); } : Reflect.get(target, prop, receiver)),
    });
    const deps = { ...base, keys };
    await runDueLifecycleWork(deps);
    await runDueLifecycleWork(deps);
    assert.equal((await base.keys.getKey(keyId))!.currentMaterialVersion, 2);
  });

  it('a deletion destroys every object carrying each id, a duplicate included', async () => {
    let now = new Date('2026-11-29T12:00:00Z');
    const deps = { ...(await unitDeps()), clock: () => now };
    const keyId = await newKey(deps);
    const [material] = await deps.keys.listMaterialsOf(keyId);
    deps.fake.duplicate(material.objects.kek);
    await scheduleKeyDeletion.handle({ KeyId: keyId, PendingWindowInDays: 7 }, operationContext(deps));
    now = new Date(now.getTime() + 8 * 86_400_000);
    assert.deepEqual((await runDueLifecycleWork(deps)).deleted, [keyId]);
    assert.deepEqual(await deps.fake.listKeyObjects('qkms/'), []);
  });
});

describe('Scheduled key work in the audit trail', () => {
  it('records DeleteKey and RotateKey before doing anything: work whose record fails is not done, and is retried', async () => {
    let now = new Date('2026-11-29T12:00:00Z');
    const recorded: string[] = [];
    let isTrailDown = true;
    const base = { ...(await unitDeps()), clock: () => now };
    const deps = {
      ...base,
      recordEvent: async (operation: string, keyId: string, errorCode: string | null) => {
        if (isTrailDown) throw new Error('the audit trail cannot be written');
        recorded.push(`${operation} ${keyId}${errorCode ? ` ${errorCode}` : ''}`);
      },
    };
    const keyId = await newKey(base);
    await base.keys.setRotation(keyId, { periodDays: 90, nextRotationDate: new Date(now.getTime() + 1000) });
    const doomed = await newKey(base);
    await scheduleKeyDeletion.handle({ KeyId: doomed, PendingWindowInDays: 7 }, operationContext(base));
    now = new Date(now.getTime() + 8 * 86_400_000);
    const backoff = new RetryBackoff();
    const first = await runDueLifecycleWork(deps, backoff);
    assert.deepEqual([first.deleted, first.rotated], [[], []]);
    assert.equal((await base.fake.listKeyObjects(`qkms/${doomed}/`)).length, 2, 'nothing destroyed without its record');
    assert.equal((await base.keys.getKey(keyId))!.currentMaterialVersion, 1, 'nor rotated');
    isTrailDown = false;
    now = new Date(now.getTime() + RETRY_FIRST_MS);
    assert.deepEqual((await runDueLifecycleWork(deps, backoff)).deleted, [doomed]);
    assert.deepEqual(recorded, [`DeleteKey ${doomed}`, `RotateKey ${keyId}`]);
  });
});
