import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import type { Grant, KeyRecord, KeyRepository, MaterialIntent } from '../../src/domain/key-repository';
import { importedMaterialContract } from './imported-material-contract';
import { keyRepositoryRegionsContract } from './key-repository-regions-contract';

/**
 * One behaviour suite for every KeyRepository: SQLite in unit tests, PostgreSQL in integration
 * tests. `openStore` gives a new, empty store for each test; the suite closes it. Sequential
 * semantics only: the PostgreSQL races between replicas are in test/integration/postgres-races.test.ts.
 */
export function keyRepositoryContract(name: string, openStore: () => Promise<KeyRepository>): void {
  describe(`KeyRepository contract: ${name}`, function () {
    let store: KeyRepository;
    beforeEach(async () => (store = await openStore()));
    afterEach(async () => store.close());

    const at = new Date('2026-11-29T12:00:00.123Z');
    const later = (days: number) => new Date(at.getTime() + days * 86400000);
    const ids = () => ({ kek: crypto.randomBytes(16).toString('hex'), mac: crypto.randomBytes(16).toString('hex') });
    const material = () => crypto.randomBytes(32).toString('hex');

    async function createKey(over: Partial<KeyRecord> = {}, tags = [{ key: 'team', value: 'a' }]): Promise<KeyRecord> {
      const key: KeyRecord = { keyId: crypto.randomUUID(), createdAt: at, description: 'd', keyUsage: 'ENCRYPT_DECRYPT', keySpec: 'SYMMETRIC_DEFAULT', origin: 'AWS_KMS', state: 'Enabled', currentMaterialVersion: 1, ...over };
      const intent = await store.recordKeyIntent({ keyId: key.keyId, objectIds: ids(), createdAt: at });
      await store.activateKey(intent, key, material(), tags);
      return key;
    }
    const rotate = (keyId: string, extra: { dueBy?: Date; onDemandLimit?: number } = {}) => store.reserveVersion(keyId, { rotationType: 'ON_DEMAND', objectIds: ids(), createdAt: at, ...extra });
    const reserved = (r: MaterialIntent | string): MaterialIntent => {
      assert.notEqual(typeof r, 'string', `refused: ${String(r)}`);
      return r as MaterialIntent;
    };

    it('records a key as an intent, then activates it with its first material and tags; the records read back field for field', async () => {
      const objectIds = ids();
      const keyId = crypto.randomUUID();
      const intent = await store.recordKeyIntent({ keyId, objectIds, createdAt: at });
      assert.deepEqual((await store.listIntents()).map((i) => [i.intentId, i.keyId, i.version, i.purpose, i.objects.kek.id]), [[intent.intentId, keyId, 1, 'create', objectIds.kek]]);
      assert.equal(await store.getKey(keyId), undefined);
      const key: KeyRecord = { keyId, createdAt: at, description: 'first', keyUsage: 'ENCRYPT_DECRYPT', keySpec: 'SYMMETRIC_DEFAULT', origin: 'AWS_KMS', state: 'Enabled', currentMaterialVersion: 1, policy: '{"Version":"2012-10-17"}', rotation: { periodDays: 90, nextRotationDate: later(90) } };
      const materialId = material();
      await store.activateKey(intent, key, materialId, [{ key: 'b', value: '2' }, { key: 'a', value: '1' }]);
      assert.deepEqual(await store.getKey(keyId), { ...key, deletionDate: undefined, pendingWindowDays: undefined });
      assert.deepEqual(await store.getMaterial(keyId, 1), { keyId, version: 1, materialId, createdAt: at, objects: intent.objects });
      // A ciphertext's version field is a client's uint32: one no key has is simply not there.
      for (const version of [0, 2, 2 ** 31, 2 ** 32 - 1]) assert.equal(await store.getMaterial(keyId, version), undefined);
      assert.deepEqual(await store.listTags(keyId), [{ key: 'a', value: '1' }, { key: 'b', value: '2' }]);
      assert.deepEqual(await store.listIntents(), []);
    });

    it('lists keys in creation order by opaque, increasing positions', async () => {
      const made = [await createKey(), await createKey(), await createKey()];
      const all = await store.listKeys(0, 10);
      assert.deepEqual(all.map((k) => k.keyId), made.map((k) => k.keyId));
      assert.deepEqual((await store.listKeys(all[0].position, 1)).map((k) => k.keyId), [made[1].keyId]);
    });

    it('records on every intent, of a key and of a rotation, the owner id of the store instance that recorded it', async () => {
      assert.match(store.ownerId, /\S/);
      const key = await createKey();
      const created = await store.recordKeyIntent({ keyId: crypto.randomUUID(), objectIds: ids(), createdAt: at });
      const rotation = reserved(await rotate(key.keyId));
      assert.deepEqual([created.owner, rotation.owner], [store.ownerId, store.ownerId]);
      assert.deepEqual((await store.listIntents()).map((i) => i.owner), [store.ownerId, store.ownerId], 'read back as recorded');
    });

    it('never activates an abandoned intent, and tells whether an intent is still there', async () => {
      const keyId = crypto.randomUUID();
      const intent = await store.recordKeyIntent({ keyId, objectIds: ids(), createdAt: at });
      assert.equal(await store.abandonIntent(intent.intentId), true);
      const key: KeyRecord = { keyId, createdAt: at, description: '', keyUsage: 'ENCRYPT_DECRYPT', keySpec: 'SYMMETRIC_DEFAULT', origin: 'AWS_KMS', state: 'Enabled', currentMaterialVersion: 1 };
      await assert.rejects(store.activateKey(intent, key, material(), []), /gone or being rolled back/);
      assert.equal(await store.getKey(keyId), undefined, 'the failed activation wrote nothing');
      await store.deleteIntent(intent.intentId);
      assert.equal(await store.abandonIntent(intent.intentId), false);
      const other = await createKey();
      const rotation = reserved(await rotate(other.keyId));
      await store.activateRotation(rotation, material());
      assert.equal(await store.abandonIntent(rotation.intentId), false, 'activated: its objects are a version now');
    });

    it('reserves each version number once, even after a rollback, and makes the highest activated one current', async () => {
      const key = await createKey();
      const v2 = reserved(await rotate(key.keyId));
      const v3 = reserved(await rotate(key.keyId));
      assert.deepEqual([v2.version, v3.version, v2.purpose, v2.rotationType], [2, 3, 'rotate', 'ON_DEMAND']);
      await store.abandonIntent(v2.intentId);
      await store.deleteIntent(v2.intentId);
      assert.equal(reserved(await rotate(key.keyId)).version, 4, 'the rolled-back 2 is not reused');
      await store.activateRotation(v3, material());
      assert.equal((await store.getKey(key.keyId))!.currentMaterialVersion, 3);
      assert.deepEqual((await store.listMaterialsOf(key.keyId)).map((m) => [m.version, m.rotationType]), [[1, undefined], [3, 'ON_DEMAND']]);
      assert.deepEqual((await store.listMaterials()).map((m) => m.version), [1, 3]);
    });

    it('refuses a reservation for a key that is not Enabled, not due, being deleted, or over its on-demand quota (counting rotations in flight), using no version', async () => {
      const key = await createKey({ rotation: { periodDays: 90, nextRotationDate: later(90) } });
      const automatic = (dueBy: Date) => store.reserveVersion(key.keyId, { rotationType: 'AUTOMATIC', objectIds: ids(), createdAt: at, dueBy });
      assert.equal(await automatic(later(1)), 'state');
      assert.equal(reserved(await automatic(later(90))).version, 2);
      await store.activateRotation(reserved(await rotate(key.keyId, { onDemandLimit: 2 })), material());
      assert.equal(reserved(await rotate(key.keyId, { onDemandLimit: 2 })).version, 4);
      assert.equal(await rotate(key.keyId, { onDemandLimit: 2 }), 'quota', 'one activated and one in flight; the automatic one does not count');
      assert.equal(reserved(await rotate(key.keyId)).version, 5, 'the refusal used no version');
      assert.equal(await store.transitionState(key.keyId, ['Enabled'], { state: 'Disabled', deletionDate: null, pendingWindowDays: null }), true);
      assert.equal(await rotate(key.keyId), 'state');
      assert.equal(await rotate(crypto.randomUUID()), 'state');
    });

    it('moves the automatic-rotation date on only while the rotation settings are the ones the rotation was made under', async () => {
      const key = await createKey({ rotation: { periodDays: 90, nextRotationDate: at } });
      assert.deepEqual(await store.keysDueForRotation(at), [key.keyId]);
      const first = reserved(await store.reserveVersion(key.keyId, { rotationType: 'AUTOMATIC', objectIds: ids(), createdAt: at, dueBy: at }));
      await store.activateRotation(first, material(), { periodDays: 90, nextRotationDate: later(90) });
      assert.deepEqual((await store.getKey(key.keyId))!.rotation, { periodDays: 90, nextRotationDate: later(90) });
      assert.deepEqual(await store.keysDueForRotation(at), []);
      const second = reserved(await rotate(key.keyId));
      assert.equal(await store.setRotation(key.keyId, { periodDays: 30, nextRotationDate: later(30) }), true);
      await store.activateRotation(second, material(), { periodDays: 90, nextRotationDate: later(180) });
      assert.deepEqual((await store.getKey(key.keyId))!.rotation, { periodDays: 30, nextRotationDate: later(30) }, 'EnableKeyRotation meanwhile stands');
      assert.equal(await store.setRotation(key.keyId, null), true);
      assert.equal((await store.getKey(key.keyId))!.rotation, undefined);
    });

    it('changes state only from the given states (compare-and-set), and not once deletion began', async () => {
      const key = await createKey();
      const pending = { state: 'PendingDeletion' as const, deletionDate: later(7), pendingWindowDays: 7 };
      assert.equal(await store.transitionState(key.keyId, ['Disabled'], pending), false);
      assert.equal(await store.transitionState(key.keyId, ['Enabled', 'Disabled'], pending), true);
      const read = (await store.getKey(key.keyId))!;
      assert.deepEqual([read.state, read.deletionDate, read.pendingWindowDays], ['PendingDeletion', later(7), 7]);
      assert.equal(await store.setRotation(key.keyId, { periodDays: 90, nextRotationDate: later(90) }), false, 'rotation settings only while Enabled');
      assert.deepEqual(await store.keysDueForDeletion(later(6)), []);
      assert.equal(await store.beginDeletion(key.keyId, later(6)), false, 'not due yet');
      assert.equal(await store.beginDeletion(key.keyId, later(7)), true);
      assert.equal(await store.beginDeletion(key.keyId, later(8)), false, 'claimed once');
      assert.deepEqual((await store.getKey(key.keyId))!.deletionStartedAt, later(7));
      assert.equal(await store.transitionState(key.keyId, ['PendingDeletion'], { state: 'Disabled', deletionDate: null, pendingWindowDays: null }), false, 'too late to cancel');
      assert.deepEqual(await store.keysDueForDeletion(at), [key.keyId], 'a begun deletion is due whatever the time');
    });

    it('deletes only a key whose deletion began, with everything that refers to it', async () => {
      const key = await createKey();
      const keep = await createKey();
      assert.equal(await store.insertAlias({ aliasName: 'alias/gone', targetKeyId: key.keyId, createdAt: at, lastUpdatedAt: at }, 50), 'created');
      const g0 = grant(key.keyId);
      assert.equal(await store.insertGrant(g0, Buffer.alloc(32, 1), 50), g0.grantId);
      reserved(await rotate(key.keyId));
      await assert.rejects(store.deleteKey(key.keyId), /was not begun/);
      await store.transitionState(key.keyId, ['Enabled'], { state: 'PendingDeletion', deletionDate: at, pendingWindowDays: 7 });
      assert.equal(await store.beginDeletion(key.keyId, at), true);
      await store.deleteKey(key.keyId);
      assert.equal(await store.getKey(key.keyId), undefined);
      assert.deepEqual([await store.listMaterialsOf(key.keyId), await store.listTags(key.keyId), await store.listIntents(), await store.listGrants({ keyId: key.keyId }, 0, 10)], [[], [], [], []]);
      assert.equal(await store.getAlias('alias/gone'), undefined);
      assert.ok(await store.getKey(keep.keyId));
    });

    it('keeps alias names unique and each key under its alias quota; retargets under the quota too', async () => {
      const [a, b] = [await createKey(), await createKey()];
      const alias = (aliasName: string, targetKeyId: string) => ({ aliasName, targetKeyId, createdAt: at, lastUpdatedAt: at });
      assert.equal(await store.insertAlias(alias('alias/one', a.keyId), 2), 'created');
      assert.equal(await store.insertAlias(alias('alias/one', b.keyId), 2), 'taken');
      assert.equal(await store.insertAlias(alias('alias/two', a.keyId), 2), 'created');
      assert.equal(await store.insertAlias(alias('alias/three', a.keyId), 2), 'quota');
      assert.equal(await store.insertAlias(alias('alias/one', a.keyId), 2), 'taken', 'a taken name is reported before the quota');
      assert.equal(await store.insertAlias(alias('alias/three', b.keyId), 2), 'created');
      assert.equal(await store.countAliases(a.keyId), 2);
      assert.equal(await store.retargetAlias('alias/three', a.keyId, later(1), 2), false, 'a is full');
      assert.equal(await store.retargetAlias('alias/one', a.keyId, later(1), 2), true, 'an alias of a already counts');
      assert.equal(await store.retargetAlias('alias/one', b.keyId, later(1), 2), true);
      const { aliasName, targetKeyId, createdAt, lastUpdatedAt } = (await store.getAlias('alias/one'))!;
      assert.deepEqual({ aliasName, targetKeyId, createdAt, lastUpdatedAt }, { ...alias('alias/one', b.keyId), lastUpdatedAt: later(1) });
      assert.equal(await store.aliasTarget('alias/one'), b.keyId);
      assert.equal(await store.aliasTarget('alias/none'), undefined);
      const all = await store.listAliases(0, 10);
      assert.deepEqual(all.map((x) => x.aliasName), ['alias/one', 'alias/two', 'alias/three'], 'creation order');
      assert.deepEqual((await store.listAliases(all[0].position, 1)).map((x) => x.aliasName), ['alias/two']);
      assert.deepEqual((await store.listAliases(0, 10, b.keyId)).map((x) => x.aliasName), ['alias/one', 'alias/three']);
      await store.deleteAlias('alias/one');
      assert.equal(await store.countAliases(b.keyId), 1);
    });

    it('updates descriptions, policies and tags (put replaces, remove deletes, in one step)', async () => {
      const key = await createKey({}, [{ key: 'a', value: '1' }, { key: 'b', value: '2' }]);
      await store.setDescription(key.keyId, 'new');
      await store.setPolicy(key.keyId, '{"p":1}');
      await store.changeTags(key.keyId, [{ key: 'a', value: 'x' }, { key: 'c', value: '3' }], ['b', 'missing']);
      const read = (await store.getKey(key.keyId))!;
      assert.deepEqual([read.description, read.policy], ['new', '{"p":1}']);
      assert.deepEqual(await store.listTags(key.keyId), [{ key: 'a', value: 'x' }, { key: 'c', value: '3' }]);
    });

    function grant(keyId: string, over: Partial<Grant> = {}): Grant {
      return { grantId: crypto.randomBytes(32).toString('hex'), keyId, granteePrincipal: 'arn:aws:iam::111122223333:role/app', issuingAccount: 'arn:aws:iam::111122223333:root', operations: ['Decrypt', 'Encrypt'], createdAt: at, ...over };
    }

    it('stores grants with their tokens, lists them by any filter in creation order, and keeps each key under its grant quota', async () => {
      const [a, b] = [await createKey(), await createKey()];
      const full = grant(a.keyId, { name: 'n', retiringPrincipal: 'arn:aws:iam::111122223333:role/ops', constraints: { EncryptionContextSubset: { z: '1', a: '2' } } });
      const [h1, h2] = [Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
      assert.equal(await store.insertGrant(full, h1, 2), full.grantId);
      const retry = { ...full, grantId: crypto.randomBytes(32).toString('hex') };
      assert.equal(await store.insertGrant(retry, h2, 2, (existing) => existing.name === retry.name), full.grantId, 'the same name adds the token to that grant');
      assert.equal(await store.insertGrant(retry, h2, 2, (existing) => existing.name === retry.name), full.grantId, 'a token added twice is one');
      assert.deepEqual((await store.grantTokenHashes(full.grantId)).map((h) => h.toString('hex')).sort(), [h1, h2].map((h) => h.toString('hex')));
      assert.deepEqual(await store.grantTokenHashes('unknown'), []);
      assert.deepEqual(await store.getGrant(full.grantId), full);
      assert.equal(JSON.stringify((await store.getGrant(full.grantId))!.constraints), JSON.stringify(full.constraints), 'constraints come back as given');
      const plain = grant(a.keyId, { granteePrincipal: 'arn:aws:iam::111122223333:role/other' });
      assert.equal(await store.insertGrant(plain, h1, 2), plain.grantId);
      assert.equal(await store.insertGrant(grant(a.keyId), h1, 2), 'quota', 'a has 2');
      const ofB = grant(b.keyId);
      assert.equal(await store.insertGrant(ofB, h1, 2), ofB.grantId);
      // The same name and parameters: the same grant, one more token, even at the quota.
      const h3 = Buffer.alloc(32, 3);
      const twin = { ...full, grantId: crypto.randomBytes(32).toString('hex') };
      const sameAs = (r: Grant) => (g: Grant) => g.granteePrincipal === r.granteePrincipal && g.retiringPrincipal === r.retiringPrincipal;
      assert.equal(await store.insertGrant(twin, h3, 2, sameAs(twin)), full.grantId);
      assert.ok((await store.grantTokenHashes(full.grantId)).some((h) => h.equals(h3)));
      const other = { ...twin, granteePrincipal: 'arn:aws:iam::111122223333:role/else' };
      assert.equal(await store.insertGrant(other, h3, 2, sameAs(other)), 'quota', 'other parameters: a new grant, and a has 2');
      assert.equal(await store.countGrants(a.keyId), 2);
      const ofA = await store.listGrants({ keyId: a.keyId }, 0, 10);
      assert.deepEqual(ofA.map((g) => g.grantId), [full.grantId, plain.grantId]);
      assert.deepEqual((await store.listGrants({ keyId: a.keyId }, ofA[0].position, 10)).map((g) => g.grantId), [plain.grantId]);
      assert.deepEqual((await store.listGrants({ granteePrincipal: plain.granteePrincipal }, 0, 10)).map((g) => g.grantId), [plain.grantId]);
      assert.deepEqual((await store.listGrants({ retiringPrincipal: full.retiringPrincipal }, 0, 10)).map((g) => g.grantId), [full.grantId]);
      assert.deepEqual((await store.listGrants({ grantId: full.grantId, keyId: b.keyId }, 0, 10)), []);
      await store.deleteGrant(full.grantId);
      assert.equal(await store.getGrant(full.grantId), undefined);
      assert.deepEqual(await store.grantTokenHashes(full.grantId), []);
    });

    it('commits a probe write, and keeps the audit anchor: adopt until first set, then exactly what was set', async () => {
      await store.probeWrite(1000);
      assert.equal(await store.getAuditAnchor(), 'adopt');
      const anchor = { segment: 3, endOffset: 2 ** 40 + 5, seq: 2 ** 33, head: 'ab'.repeat(32), mac: 'cd'.repeat(32) };
      await store.setAuditAnchor(anchor);
      assert.deepEqual(await store.getAuditAnchor(), anchor);
      await store.setAuditAnchor({ ...anchor, seq: anchor.seq + 1 });
      assert.equal((await store.getAuditAnchor() as { seq: number }).seq, anchor.seq + 1);
    });

    importedMaterialContract(() => store);
    keyRepositoryRegionsContract(() => store);
  });
}
