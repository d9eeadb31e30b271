import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import type { Grant, KeyRecord, KeyRepository, MaterialIntent, Tag } from '../../src/domain/key-repository';

/**
 * The regions part of the KeyRepository contract (key-repository-contract.ts runs it on each
 * store): views per region, regional facts (the record, its state, tags, aliases, grants, usage)
 * against shared ones (materials, versions, rotation, primary region), multi-Region keys' replicas.
 * `store` gives the test's open store, the home region's view; the other regions are named so that
 * they sort before and after it.
 */
export function keyRepositoryRegionsContract(store: () => KeyRepository): void {
  describe('regions', () => {
    const at = new Date('2026-11-29T12:00:00.123Z');
    const later = (days: number) => new Date(at.getTime() + days * 86400000);
    const ids = () => ({ kek: crypto.randomBytes(16).toString('hex'), mac: crypto.randomBytes(16).toString('hex') });
    const material = () => crypto.randomBytes(32).toString('hex');
    const mrkId = () => `mrk-${crypto.randomBytes(16).toString('hex')}`;
    const home = () => store();
    const eu = () => store().inRegion('eu-west-1');
    const ap = () => store().inRegion('ap-southeast-2');
    const zz = () => store().inRegion('zz-last-1');
    const disabled = { state: 'Disabled' as const, deletionDate: null, pendingWindowDays: null };
    const pendingDeletion = (days: number) => ({ state: 'PendingDeletion' as const, deletionDate: later(days), pendingWindowDays: 7 });

    /** A key created (intent, activation) through `view`; multi-Region (primary in that view's region) unless `keyId` is a UUID. */
    async function createKey(view: KeyRepository, over: Partial<KeyRecord> = {}, tags: Tag[] = [{ key: 'team', value: 'a' }]): Promise<KeyRecord> {
      const keyId = over.keyId ?? mrkId();
      const key: KeyRecord = {
        keyId, createdAt: at, description: 'primary', keyUsage: 'ENCRYPT_DECRYPT', keySpec: 'SYMMETRIC_DEFAULT', origin: 'AWS_KMS', state: 'Enabled', currentMaterialVersion: 1,
        ...(keyId.startsWith('mrk-') && { primaryRegion: view.region }), ...over,
      };
      const intent = await view.recordKeyIntent({ keyId, objectIds: ids(), createdAt: at });
      await view.activateKey(intent, key, material(), tags);
      return key;
    }
    /** An EXTERNAL multi-Region key (PendingImport, no material) created through `view`. */
    async function externalKey(view: KeyRepository): Promise<KeyRecord> {
      const key: KeyRecord = {
        keyId: mrkId(), createdAt: at, description: 'byok', keyUsage: 'ENCRYPT_DECRYPT', keySpec: 'SYMMETRIC_DEFAULT', origin: 'EXTERNAL', state: 'PendingImport',
        currentMaterialVersion: 0, primaryRegion: view.region,
      };
      await view.insertExternalKey(key, []);
      return key;
    }
    /** getKey's answer for `key` as created: absent optional facts read back as undefined members. */
    const readBack = (key: KeyRecord): KeyRecord => ({ deletionDate: undefined, pendingWindowDays: undefined, policy: undefined, rotation: undefined, ...key });
    /** ReplicateKey into `view`: only the regional facts given here count. */
    const replicate = (view: KeyRepository, key: KeyRecord, over: Partial<KeyRecord> = {}, tags: Tag[] = []) =>
      view.insertReplica({ ...key, createdAt: later(1), description: 'replica', state: 'Enabled', ...over }, tags);
    /** A multi-Region key with its primary at home and a replica in eu-west-1. */
    async function replicatedKey(over: Partial<KeyRecord> = {}): Promise<KeyRecord> {
      const key = await createKey(home(), over);
      assert.equal(await replicate(eu(), key), 'created');
      return key;
    }
    const reserved = (r: MaterialIntent | string): MaterialIntent => {
      assert.notEqual(typeof r, 'string', `refused: ${String(r)}`);
      return r as MaterialIntent;
    };
    const rotate = (view: KeyRepository, keyId: string, extra: { dueBy?: Date; onDemandLimit?: number; rotationType?: 'AUTOMATIC' | 'ON_DEMAND' } = {}) =>
      view.reserveVersion(keyId, { rotationType: 'ON_DEMAND', objectIds: ids(), createdAt: at, ...extra });
    const grant = (keyId: string, over: Partial<Grant> = {}): Grant => ({
      grantId: crypto.randomBytes(32).toString('hex'), keyId, granteePrincipal: 'arn:aws:iam::111122223333:role/app', issuingAccount: 'arn:aws:iam::111122223333:root',
      operations: ['Decrypt'], createdAt: at, ...over,
    });
    const alias = (aliasName: string, targetKeyId: string) => ({ aliasName, targetKeyId, createdAt: at, lastUpdatedAt: at });
    /** Deletion begun in `view`'s region (PendingDeletion due at `at`, claimed). */
    async function beginDeletion(view: KeyRepository, keyId: string, from: KeyRecord['state'][] = ['Enabled']): Promise<void> {
      assert.equal(await view.transitionState(keyId, from, pendingDeletion(0)), true);
      assert.equal(await view.beginDeletion(keyId, at), true);
    }

    it('gives a view per region, memoised, on the same store; the view opened without a region serves us-east-1', async () => {
      assert.equal(home().region, 'us-east-1', 'the config default QKMS_REGION');
      assert.equal(eu().region, 'eu-west-1');
      assert.equal(eu(), eu(), 'one view per region');
      assert.equal(home().inRegion(home().region).region, home().region);
      assert.equal(eu().ownerId, home().ownerId, 'one store, one owner of its intents');
      const key = await createKey(eu(), { keyId: crypto.randomUUID() });
      assert.ok(await eu().inRegion('eu-west-1').getKey(key.keyId));
    });

    it('keeps a key in the region it was created in: getKey, listKeys and keyRegions', async () => {
      const single = await createKey(home(), { keyId: crypto.randomUUID() });
      const inEu = await createKey(eu(), { keyId: crypto.randomUUID() });
      assert.equal(await eu().getKey(single.keyId), undefined);
      assert.equal(await home().getKey(inEu.keyId), undefined);
      assert.deepEqual(await eu().getKey(inEu.keyId), readBack(inEu));
      assert.equal((await home().getKey(single.keyId))!.primaryRegion, undefined, 'a single-Region key has none');
      assert.deepEqual((await home().listKeys(0, 10)).map((k) => k.keyId), [single.keyId]);
      assert.deepEqual((await eu().listKeys(0, 10)).map((k) => k.keyId), [inEu.keyId]);
      assert.deepEqual(await ap().listKeys(0, 10), []);
      assert.deepEqual(await ap().keyRegions(inEu.keyId), [{ region: 'eu-west-1', state: 'Enabled' }], 'from any view');
      assert.deepEqual(await eu().keyRegions(crypto.randomUUID()), []);
      assert.deepEqual(await ap().regionsWithKeys(), ['eu-west-1', 'us-east-1'], 'every region holding a record, from any view');
      assert.deepEqual(await eu().keysDueForDeletion(later(1000)), []);
    });

    it('creates a multi-Region key in the view\'s region with its primary region, read back field for field', async () => {
      const key = await createKey(eu(), { rotation: { periodDays: 90, nextRotationDate: later(90) }, policy: '{"p":1}' });
      assert.deepEqual(await eu().getKey(key.keyId), readBack({ ...key, primaryRegion: 'eu-west-1' }));
      assert.deepEqual(await home().keyRegions(key.keyId), [{ region: 'eu-west-1', state: 'Enabled' }]);
    });

    it('inserts a replica with the regional facts given and the shared ones copied, with its tags: created, then exists; gone for an unknown key id', async () => {
      const key = await createKey(home(), { rotation: { periodDays: 90, nextRotationDate: later(90) }, policy: '{"p":"primary"}' }, [{ key: 'team', value: 'a' }]);
      await home().activateRotation(reserved(await rotate(home(), key.keyId)), material());
      reserved(await rotate(home(), key.keyId)); // version 3 in flight: reserved on every record
      const misleading = { currentMaterialVersion: 99, rotation: undefined, primaryRegion: 'ap-southeast-2', keySpec: 'HMAC_256' as const, keyUsage: 'GENERATE_VERIFY_MAC' as const };
      assert.equal(await replicate(eu(), key, { ...misleading, policy: '{"p":"replica"}', state: 'Disabled' }, [{ key: 'where', value: 'eu' }]), 'created');
      assert.deepEqual(await eu().getKey(key.keyId), readBack({
        ...key, createdAt: later(1), description: 'replica', policy: '{"p":"replica"}', state: 'Disabled', currentMaterialVersion: 2, primaryRegion: 'us-east-1',
      }));
      assert.deepEqual(await eu().listTags(key.keyId), [{ key: 'where', value: 'eu' }]);
      assert.deepEqual(await home().listTags(key.keyId), [{ key: 'team', value: 'a' }], 'tags are regional');
      assert.deepEqual((await home().getKey(key.keyId))!.description, 'primary');
      assert.equal(await replicate(eu(), key), 'exists');
      assert.equal((await eu().getKey(key.keyId))!.description, 'replica', 'the existing record is left alone');
      assert.equal(await replicate(ap(), { ...key, keyId: mrkId() }), 'gone');
      assert.equal(await replicate(ap(), key, { state: 'Enabled' }), 'created');
      assert.equal(reserved(await rotate(ap(), key.keyId)).version, 4, 'the reserved 3 came with the shared facts');
      assert.deepEqual(await zz().keyRegions(key.keyId), [
        { region: 'ap-southeast-2', state: 'Enabled' }, { region: 'eu-west-1', state: 'Disabled' }, { region: 'us-east-1', state: 'Enabled' },
      ], 'ordered by region');
      assert.deepEqual((await eu().listKeys(0, 10)).map((k) => k.keyId), [key.keyId]);
    });

    it('refuses a replica (gone) once every record\'s deletion has begun: the material may be destroyed next', async () => {
      const key = await replicatedKey();
      await beginDeletion(eu(), key.keyId);
      assert.equal(await replicate(ap(), key), 'created', 'the primary still holds the key');
      await beginDeletion(ap(), key.keyId);
      await beginDeletion(home(), key.keyId);
      assert.equal(await replicate(zz(), key), 'gone');
      assert.deepEqual(await zz().keyRegions(key.keyId), [
        { region: 'ap-southeast-2', state: 'PendingDeletion' }, { region: 'eu-west-1', state: 'PendingDeletion' }, { region: 'us-east-1', state: 'PendingDeletion' },
      ]);
    });

    it('changes state, description, policy and tags only in the view\'s region', async () => {
      const key = await replicatedKey();
      assert.equal(await eu().transitionState(key.keyId, ['Enabled'], disabled), true);
      await eu().setDescription(key.keyId, 'eu only');
      await eu().setPolicy(key.keyId, '{"eu":1}');
      await eu().changeTags(key.keyId, [{ key: 'x', value: '1' }], ['team']);
      const [primary, replica] = [(await home().getKey(key.keyId))!, (await eu().getKey(key.keyId))!];
      assert.deepEqual([primary.state, primary.description, primary.policy], ['Enabled', 'primary', undefined]);
      assert.deepEqual([replica.state, replica.description, replica.policy], ['Disabled', 'eu only', '{"eu":1}']);
      assert.deepEqual(await home().listTags(key.keyId), [{ key: 'team', value: 'a' }]);
      assert.deepEqual(await eu().listTags(key.keyId), [{ key: 'x', value: '1' }]);
      assert.equal(await ap().transitionState(key.keyId, ['Enabled', 'Disabled'], disabled), false, 'no record in that region');
      assert.deepEqual(await ap().listTags(key.keyId), []);
      assert.deepEqual(await home().keyRegions(key.keyId), [{ region: 'eu-west-1', state: 'Disabled' }, { region: 'us-east-1', state: 'Enabled' }]);
    });

    it('shares material, versions and rotation: checked on the view\'s record, written to every record', async () => {
      const key = await replicatedKey({ rotation: { periodDays: 90, nextRotationDate: later(90) } });
      const v2 = reserved(await rotate(eu(), key.keyId));
      const materialId = material();
      await eu().activateRotation(v2, materialId, { periodDays: 90, nextRotationDate: later(180) });
      for (const view of [home(), eu()]) {
        const read = (await view.getKey(key.keyId))!;
        assert.deepEqual([read.currentMaterialVersion, read.rotation], [2, { periodDays: 90, nextRotationDate: later(180) }], `${view.region}: current version and next rotation date are shared`);
        assert.equal((await view.getMaterial(key.keyId, 2))!.materialId, materialId);
        assert.deepEqual((await view.listMaterialsOf(key.keyId)).map((m) => m.version), [1, 2]);
      }
      assert.deepEqual((await ap().listMaterials()).filter((m) => m.keyId === key.keyId).map((m) => m.version), [1, 2], 'listed once, from any view');
      assert.equal(await eu().setRotation(key.keyId, { periodDays: 30, nextRotationDate: later(30) }), true);
      assert.deepEqual((await home().getKey(key.keyId))!.rotation, { periodDays: 30, nextRotationDate: later(30) });
      assert.equal(await eu().transitionState(key.keyId, ['Enabled'], disabled), true);
      assert.equal(await eu().setRotation(key.keyId, null), false, 'the view\'s record is Disabled');
      assert.equal(await rotate(eu(), key.keyId), 'state', 'the view\'s record is Disabled');
      assert.deepEqual((await home().getKey(key.keyId))!.rotation, { periodDays: 30, nextRotationDate: later(30) }, 'the refusal wrote nothing');
      assert.equal(reserved(await rotate(home(), key.keyId)).version, 3, 'the home record is Enabled');
      assert.equal(await home().setRotation(key.keyId, null), true);
      assert.equal((await eu().getKey(key.keyId))!.rotation, undefined);
      assert.equal(await eu().transitionState(key.keyId, ['Disabled'], { state: 'Enabled', deletionDate: null, pendingWindowDays: null }), true);
      assert.equal(reserved(await rotate(eu(), key.keyId)).version, 4, 'versions are reserved on every record');
      assert.equal(await rotate(eu(), key.keyId, { onDemandLimit: 3 }), 'quota', 'on-demand rotations of every region count: 2, 3, 4');
      assert.equal(await rotate(ap(), key.keyId), 'state', 'no record in that region');
    });

    it('lists a multi-Region key due for rotation only in its primary\'s region, and moves the primary by compare-and-set', async () => {
      const key = await replicatedKey({ rotation: { periodDays: 90, nextRotationDate: at } });
      const single = await createKey(eu(), { keyId: crypto.randomUUID(), rotation: { periodDays: 90, nextRotationDate: at } });
      assert.deepEqual(await home().keysDueForRotation(at), [key.keyId]);
      assert.deepEqual(await eu().keysDueForRotation(at), [single.keyId], 'a single-Region key rotates in its own region');
      assert.equal(await home().setPrimaryRegion(key.keyId, 'eu-west-1', 'us-east-1'), false, 'the primary is not eu-west-1');
      assert.equal(await home().setPrimaryRegion(key.keyId, 'us-east-1', 'ap-southeast-2'), false, 'no record in ap-southeast-2');
      assert.equal(await ap().setPrimaryRegion(mrkId(), 'us-east-1', 'eu-west-1'), false, 'unknown key id');
      assert.equal((await eu().getKey(key.keyId))!.primaryRegion, 'us-east-1', 'the refusals changed nothing');
      assert.equal(await ap().setPrimaryRegion(key.keyId, 'us-east-1', 'eu-west-1'), true, 'from any view');
      assert.deepEqual([(await home().getKey(key.keyId))!.primaryRegion, (await eu().getKey(key.keyId))!.primaryRegion], ['eu-west-1', 'eu-west-1']);
      assert.equal(await home().setPrimaryRegion(key.keyId, 'us-east-1', 'eu-west-1'), false, 'compare-and-set: from is stale');
      assert.deepEqual(await home().keysDueForRotation(at), []);
      assert.deepEqual((await eu().keysDueForRotation(at)).sort(), [key.keyId, single.keyId].sort());
      assert.equal(await replicate(ap(), key), 'created');
      assert.equal((await ap().getKey(key.keyId))!.primaryRegion, 'eu-west-1', 'a later replica copies the current primary');
      assert.deepEqual(await ap().keysDueForRotation(at), []);
    });

    it('keeps aliases per region: the same name in two regions, each to its region\'s record, with a quota per region', async () => {
      const key = await replicatedKey();
      const other = await createKey(eu(), { keyId: crypto.randomUUID() });
      assert.equal(await home().insertAlias(alias('alias/app', key.keyId), 1), 'created');
      assert.equal(await eu().insertAlias(alias('alias/app', key.keyId), 1), 'created', 'not taken in eu-west-1');
      assert.equal(await eu().insertAlias(alias('alias/more', key.keyId), 1), 'quota', 'eu-west-1\'s record has 1');
      assert.equal(await ap().aliasTarget('alias/app'), undefined);
      assert.equal(await eu().retargetAlias('alias/app', other.keyId, later(1), 1), true);
      assert.deepEqual([await home().aliasTarget('alias/app'), await eu().aliasTarget('alias/app')], [key.keyId, other.keyId]);
      assert.deepEqual([(await home().getAlias('alias/app'))!.lastUpdatedAt, (await eu().getAlias('alias/app'))!.lastUpdatedAt], [at, later(1)]);
      assert.deepEqual([await home().countAliases(key.keyId), await eu().countAliases(key.keyId), await eu().countAliases(other.keyId)], [1, 0, 1]);
      assert.deepEqual((await eu().listAliases(0, 10)).map((a) => [a.aliasName, a.targetKeyId]), [['alias/app', other.keyId]]);
      assert.deepEqual((await home().listAliases(0, 10, key.keyId)).map((a) => a.aliasName), ['alias/app']);
      assert.deepEqual(await ap().listAliases(0, 10), []);
      await eu().deleteAlias('alias/app');
      assert.equal(await eu().getAlias('alias/app'), undefined);
      assert.equal(await home().aliasTarget('alias/app'), key.keyId, 'another region\'s alias of the name stays');
    });

    it('keeps grants per region: unknown in another region, with a quota per region', async () => {
      const key = await replicatedKey();
      const ofHome = grant(key.keyId, { name: 'n' });
      const hash = Buffer.alloc(32, 7);
      assert.equal(await home().insertGrant(ofHome, hash, 1), ofHome.grantId);
      assert.deepEqual([await eu().getGrant(ofHome.grantId), await eu().grantTokenHashes(ofHome.grantId), await eu().countGrants(key.keyId)], [undefined, [], 0]);
      assert.deepEqual(await eu().listGrants({}, 0, 10), []);
      assert.deepEqual(await eu().listGrants({ grantId: ofHome.grantId }, 0, 10), []);
      const ofEu = grant(key.keyId, { name: 'n' });
      assert.equal(await eu().insertGrant(ofEu, hash, 1, () => true), ofEu.grantId, 'home\'s grant of the same name is not eu-west-1\'s, and its quota is its own');
      assert.equal(await eu().insertGrant(grant(key.keyId), hash, 1), 'quota');
      assert.deepEqual((await home().listGrants({ keyId: key.keyId }, 0, 10)).map((g) => g.grantId), [ofHome.grantId]);
      assert.deepEqual((await eu().listGrants({ keyId: key.keyId }, 0, 10)).map((g) => g.grantId), [ofEu.grantId]);
      assert.deepEqual(await eu().getGrant(ofEu.grantId), ofEu);
      await eu().deleteGrant(ofHome.grantId);
      assert.deepEqual(await home().getGrant(ofHome.grantId), ofHome, 'a grant of another region is unknown to this view, and so not deleted');
      await eu().deleteGrant(ofEu.grantId);
      assert.equal(await eu().getGrant(ofEu.grantId), undefined);
    });

    it('records last usage per region record: each entry names its region, one of a region without a record is dropped', async () => {
      const key = await replicatedKey();
      await ap().recordKeyUsage([
        { keyId: key.keyId, region: 'us-east-1', operation: 'Encrypt', at, requestId: 'r-home' },
        { keyId: key.keyId, region: 'eu-west-1', operation: 'Decrypt', at: later(1), requestId: 'r-eu' },
        { keyId: key.keyId, region: 'ap-southeast-2', operation: 'Sign', at: later(2), requestId: 'r-ap' },
      ]);
      await home().recordKeyUsage([{ keyId: key.keyId, region: 'eu-west-1', operation: 'Encrypt', at, requestId: 'r-older' }]);
      assert.deepEqual((await home().getKeyUsage(key.keyId)).usage, { keyId: key.keyId, region: 'us-east-1', operation: 'Encrypt', at, requestId: 'r-home' });
      assert.deepEqual((await eu().getKeyUsage(key.keyId)).usage, { keyId: key.keyId, region: 'eu-west-1', operation: 'Decrypt', at: later(1), requestId: 'r-eu' }, 'an older entry does not replace it');
      assert.equal((await ap().getKeyUsage(key.keyId)).usage, undefined);
      assert.ok((await ap().getKeyUsage(key.keyId)).trackingStartedAt instanceof Date);
    });

    it('begins deletion in the view\'s region only, and removes a record whose key id remains elsewhere with its regional facts, keeping the shared ones', async () => {
      const key = await replicatedKey({ rotation: { periodDays: 90, nextRotationDate: later(90) } });
      await eu().changeTags(key.keyId, [{ key: 'eu', value: '1' }], []);
      assert.equal(await eu().insertAlias(alias('alias/eu', key.keyId), 10), 'created');
      const ofEu = grant(key.keyId);
      assert.equal(await eu().insertGrant(ofEu, Buffer.alloc(32, 1), 10), ofEu.grantId);
      await eu().recordKeyUsage([{ keyId: key.keyId, region: 'eu-west-1', operation: 'Encrypt', at, requestId: 'r' }]);
      assert.equal(await eu().transitionState(key.keyId, ['Enabled'], pendingDeletion(7)), true);
      assert.deepEqual(await eu().keysDueForDeletion(later(7)), [key.keyId]);
      assert.deepEqual(await home().keysDueForDeletion(later(7)), []);
      assert.equal(await home().beginDeletion(key.keyId, later(7)), false, 'the home record is Enabled');
      assert.equal(await eu().beginDeletion(key.keyId, later(7)), true);
      assert.equal((await home().getKey(key.keyId))!.deletionStartedAt, undefined);
      assert.equal(await eu().deleteRegionRecord(key.keyId), true);
      assert.equal(await eu().getKey(key.keyId), undefined);
      assert.deepEqual([await eu().listTags(key.keyId), await eu().getAlias('alias/eu'), await eu().getGrant(ofEu.grantId), (await eu().getKeyUsage(key.keyId)).usage], [[], undefined, undefined, undefined]);
      assert.deepEqual(await eu().keysDueForDeletion(later(7)), []);
      assert.deepEqual(await home().keyRegions(key.keyId), [{ region: 'us-east-1', state: 'Enabled' }]);
      assert.deepEqual((await home().listMaterialsOf(key.keyId)).map((m) => m.version), [1], 'the material stays for the primary');
      assert.deepEqual((await home().getKey(key.keyId))!.rotation, { periodDays: 90, nextRotationDate: later(90) });
      assert.equal(await replicate(eu(), key), 'created', 'replicated again: a fresh record');
      assert.deepEqual([await eu().listTags(key.keyId), await eu().countAliases(key.keyId), await eu().countGrants(key.keyId), (await eu().getKeyUsage(key.keyId)).usage], [[], 0, 0, undefined]);
    });

    it('lists a primary in PendingReplicaDeletion as due for deletion once no other region holds a record, and keeps the last record for deleteKey', async () => {
      const key = await replicatedKey();
      reserved(await rotate(home(), key.keyId)); // an intent of the key id: shared, removed by deleteKey
      assert.equal(await home().transitionState(key.keyId, ['Enabled'], { state: 'PendingReplicaDeletion', deletionDate: null, pendingWindowDays: 7 }), true);
      assert.deepEqual(await home().keysDueForDeletion(later(1000)), [], 'a replica remains');
      assert.equal(await home().beginDeletion(key.keyId, later(1000)), false, 'PendingDeletion only');
      await beginDeletion(eu(), key.keyId);
      assert.deepEqual(await home().keysDueForDeletion(later(1000)), [], 'the replica\'s deletion has begun, but its record remains');
      assert.equal(await eu().deleteRegionRecord(key.keyId), true);
      assert.deepEqual(await home().keysDueForDeletion(at), [key.keyId], 'its waiting period may begin');
      assert.equal(await home().transitionState(key.keyId, ['PendingReplicaDeletion'], pendingDeletion(0)), true);
      assert.equal(await home().beginDeletion(key.keyId, at), true);
      assert.equal(await home().deleteRegionRecord(key.keyId), false, 'the last record');
      assert.ok(await home().getKey(key.keyId), 'nothing removed');
      assert.deepEqual((await home().listMaterialsOf(key.keyId)).map((m) => m.version), [1]);
      await home().deleteKey(key.keyId);
      assert.deepEqual([await home().getKey(key.keyId), await home().keyRegions(key.keyId), await home().listMaterialsOf(key.keyId)], [undefined, [], []]);
      assert.deepEqual((await home().listIntents()).filter((i) => i.keyId === key.keyId), []);
    });

    it('lists a record left in PendingReplicaDeletion that is no longer its key\'s primary (UpdatePrimaryRegion raced ScheduleKeyDeletion) as due: it waits for nothing', async () => {
      const key = await replicatedKey();
      assert.equal(await home().transitionState(key.keyId, ['Enabled'], { state: 'PendingReplicaDeletion', deletionDate: null, pendingWindowDays: 7 }), true);
      assert.equal(await home().setPrimaryRegion(key.keyId, home().region, 'eu-west-1'), true, 'the primary moved while the deletion was being scheduled');
      assert.deepEqual(await home().keysDueForDeletion(at), [key.keyId], 'a replica waits for no replicas: otherwise it and a new primary scheduled in turn would wait for each other forever');
      assert.deepEqual(await eu().keysDueForDeletion(at), [], 'the new primary is Enabled');
    });

    it('refuses deleteKey while another region holds a record of the key id, removing nothing', async () => {
      const key = await replicatedKey();
      await beginDeletion(eu(), key.keyId);
      await assert.rejects(eu().deleteKey(key.keyId));
      assert.ok(await eu().getKey(key.keyId));
      assert.ok(await home().getKey(key.keyId));
      assert.deepEqual((await home().listMaterialsOf(key.keyId)).map((m) => m.version), [1]);
    });

    it('answers deleteRegionRecord false for a key id without a record in the view\'s region, removing nothing', async () => {
      const key = await createKey(home());
      assert.equal(await eu().deleteRegionRecord(key.keyId), false);
      assert.equal(await eu().deleteRegionRecord(mrkId()), false);
      assert.ok(await home().getKey(key.keyId));
    });

    it('shares imported material: imported through one region, seen by all; state checks and changes on the view\'s record', async () => {
      const key = await externalKey(home());
      assert.equal(await replicate(eu(), key, { state: 'PendingImport' }), 'created');
      const first = await home().reserveImport(key.keyId, { version: 'new', objectIds: { kek: ids().kek }, createdAt: at });
      assert.ok(typeof first === 'object' && 'intentId' in first);
      const materialId = material();
      assert.equal(await home().activateImport(first, { materialId, expirationModel: 'KEY_MATERIAL_EXPIRES', validTo: later(10) }), 'imported');
      assert.deepEqual([(await home().getKey(key.keyId))!.state, (await eu().getKey(key.keyId))!.state], ['Enabled', 'PendingImport'], 'the replica imports the material itself');
      assert.equal((await eu().getKey(key.keyId))!.currentMaterialVersion, 1, 'the current version is shared');
      assert.deepEqual(await eu().materialsDueToExpire(later(10)), [{ keyId: key.keyId, version: 1 }], 'once, whatever the number of records');
      const again = await eu().reserveImport(key.keyId, { version: 1, objectIds: { kek: ids().kek }, createdAt: at });
      assert.ok(typeof again === 'object' && 'intentId' in again);
      assert.equal(await eu().activateImport(again, { materialId, expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' }), 'expiry-updated');
      assert.equal((await eu().getKey(key.keyId))!.state, 'Enabled');
      await eu().deleteIntent(again.intentId);
      const next = await eu().reserveImport(key.keyId, { version: 'new', objectIds: { kek: ids().kek }, createdAt: at });
      assert.ok(typeof next === 'object' && 'intentId' in next);
      assert.equal(next.version, 2);
      assert.equal(await eu().activateImport(next, { materialId: material(), expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' }), 'imported');
      assert.equal(await ap().rotateToImportedMaterial(key.keyId, later(1), 10), 'state', 'no record in that region');
      assert.equal(await eu().rotateToImportedMaterial(key.keyId, later(1), 10), 2);
      assert.equal((await home().getKey(key.keyId))!.currentMaterialVersion, 2);
      const discard = await eu().discardImportedMaterial(key.keyId, 2);
      assert.ok(discard);
      assert.equal((await eu().getKey(key.keyId))!.state, 'PendingImport');
      assert.equal((await home().getMaterial(key.keyId, 2))!.imported!.importState, 'PENDING_IMPORT', 'the material is shared');
    });

    it('removes the shared materials, intents and import parameters with the last record only', async () => {
      const key = await externalKey(home());
      assert.equal(await replicate(eu(), key, { state: 'PendingImport' }), 'created');
      const parametersId = crypto.randomUUID();
      await eu().recordImportParameters({
        parametersId, keyId: key.keyId, wrappingKeySpec: 'RSA_2048', wrappingAlgorithm: 'RSAES_OAEP_SHA_256', tokenHash: crypto.randomBytes(32),
        objects: { private: { id: ids().kek, label: `qkms-import/${parametersId}/private` }, public: { id: ids().mac, label: `qkms-import/${parametersId}/public` } },
        createdAt: at, validTo: later(1),
      });
      const inFlight = await eu().reserveImport(key.keyId, { version: 'new', objectIds: { kek: ids().kek }, createdAt: at });
      assert.ok(typeof inFlight === 'object' && 'intentId' in inFlight);
      assert.deepEqual((await home().listImportParameters(key.keyId)).map((p) => p.parametersId), [parametersId], 'shared');
      await beginDeletion(eu(), key.keyId, ['PendingImport']);
      assert.equal(await eu().deleteRegionRecord(key.keyId), true);
      assert.deepEqual((await home().listImportParameters(key.keyId)).map((p) => p.parametersId), [parametersId], 'kept for the primary');
      assert.deepEqual((await home().listIntents()).map((i) => i.intentId), [inFlight.intentId]);
      await beginDeletion(home(), key.keyId, ['PendingImport']);
      await home().deleteKey(key.keyId);
      assert.deepEqual([await home().listImportParameters(key.keyId), await home().listIntents(), await home().keyRegions(key.keyId)], [[], [], []]);
    });
  });
}
