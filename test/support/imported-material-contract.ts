import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import type { ImportParameters, KeyRecord, KeyRepository, MaterialIntent, Tag } from '../../src/domain/key-repository';

/**
 * The imported-material (BYOK) part of the KeyRepository contract (key-repository-contract.ts runs
 * it on each store). `store` gives the test's open store.
 */
export function importedMaterialContract(store: () => KeyRepository): void {
  describe('imported key material', () => {
    const at = new Date('2026-11-29T12:00:00.123Z');
    const later = (days: number) => new Date(at.getTime() + days * 86400000);
    const ids = () => ({ kek: crypto.randomBytes(16).toString('hex'), mac: crypto.randomBytes(16).toString('hex') });
    const material = () => crypto.randomBytes(32).toString('hex');
    const expires = (days: number, description?: string) => ({ expirationModel: 'KEY_MATERIAL_EXPIRES' as const, validTo: later(days), ...(description !== undefined && { description }) });
    const forever = { expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' as const };

    async function externalKey(over: Partial<KeyRecord> = {}, tags: Tag[] = []): Promise<KeyRecord> {
      const key: KeyRecord = { keyId: crypto.randomUUID(), createdAt: at, description: 'byok', keyUsage: 'ENCRYPT_DECRYPT', keySpec: 'SYMMETRIC_DEFAULT', origin: 'EXTERNAL', state: 'PendingImport', currentMaterialVersion: 0, ...over };
      await store().insertExternalKey(key, tags);
      return key;
    }
    const reserve = (keyId: string, version: number | 'new') => store().reserveImport(keyId, { version, objectIds: ids(), createdAt: at });
    const intentOf = (r: Awaited<ReturnType<KeyRepository['reserveImport']>>): MaterialIntent => {
      assert.ok(typeof r === 'object' && 'intentId' in r, `refused: ${JSON.stringify(r)}`);
      return r;
    };
    /** A key with its first material imported: version 1, current, Enabled. */
    async function importedKey(facts: { expirationModel: 'KEY_MATERIAL_EXPIRES' | 'KEY_MATERIAL_DOES_NOT_EXPIRE'; validTo?: Date; description?: string } = forever) {
      const key = await externalKey();
      const intent = intentOf(await reserve(key.keyId, 'new'));
      const materialId = material();
      assert.equal(await store().activateImport(intent, { materialId, ...facts }), 'imported');
      return { key, materialId, objects: intent.objects };
    }
    const stateOf = async (keyId: string) => (await store().getKey(keyId))!.state;

    it('stores an EXTERNAL key without material, PendingImport, and reads its origin back; refuses a record that is not one', async () => {
      const key = await externalKey({}, [{ key: 'team', value: 'b' }]);
      assert.deepEqual(await store().getKey(key.keyId), { ...key, deletionDate: undefined, pendingWindowDays: undefined, policy: undefined, rotation: undefined });
      assert.deepEqual(await store().listTags(key.keyId), [{ key: 'team', value: 'b' }]);
      assert.deepEqual(await store().listMaterialsOf(key.keyId), []);
      await assert.rejects(store().insertExternalKey({ ...key, keyId: crypto.randomUUID(), origin: 'AWS_KMS' }, []), /EXTERNAL key in PendingImport/);
      await assert.rejects(store().insertExternalKey({ ...key, keyId: crypto.randomUUID(), state: 'Enabled' }, []), /EXTERNAL key in PendingImport/);
    });

    it('never finds an EXTERNAL key due for automatic rotation, even Enabled with a rotation date (they have no automatic rotation)', async () => {
      const { key } = await importedKey();
      assert.equal(await store().setRotation(key.keyId, { periodDays: 90, nextRotationDate: at }), true);
      assert.deepEqual(await store().keysDueForRotation(later(1)), []);
    });

    it('imports a first material as an intent, then as version 1: current, with its import facts, and the key Enabled', async () => {
      const key = await externalKey();
      const intent = intentOf(await reserve(key.keyId, 'new'));
      assert.deepEqual([intent.version, intent.purpose, intent.rotationType, intent.owner], [1, 'import', undefined, store().ownerId]);
      assert.deepEqual((await store().listIntents()).map((i) => [i.intentId, i.purpose, i.version, i.objects]), [[intent.intentId, 'import', 1, intent.objects]]);
      assert.equal(await stateOf(key.keyId), 'PendingImport', 'not before the activation');
      const materialId = material();
      assert.equal(await store().activateImport(intent, { materialId, ...expires(30, 'first') }), 'imported');
      const read = (await store().getKey(key.keyId))!;
      assert.deepEqual([read.state, read.currentMaterialVersion, read.origin], ['Enabled', 1, 'EXTERNAL']);
      assert.deepEqual(await store().getMaterial(key.keyId, 1), {
        keyId: key.keyId, version: 1, materialId, createdAt: at, objects: intent.objects,
        imported: { importState: 'IMPORTED', expirationModel: 'KEY_MATERIAL_EXPIRES', validTo: later(30), description: 'first' },
      });
      assert.deepEqual(await store().listIntents(), []);
    });

    it('imports NEW_KEY_MATERIAL into a key with material as a version pending rotation: one at a time, the current one unchanged', async () => {
      const { key } = await importedKey();
      const next = intentOf(await reserve(key.keyId, 'new'));
      assert.equal(next.version, 2);
      assert.equal(await reserve(key.keyId, 'new'), 'busy', 'a second NEW_KEY_MATERIAL import while the first is in flight');
      const materialId = material();
      assert.equal(await store().activateImport(next, { materialId, ...forever }), 'imported');
      const read = (await store().getKey(key.keyId))!;
      assert.deepEqual([read.state, read.currentMaterialVersion], ['Enabled', 1]);
      assert.deepEqual((await store().getMaterial(key.keyId, 2))!.imported, { importState: 'IMPORTED', expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' });
      assert.deepEqual(await reserve(key.keyId, 'new'), { pending: materialId });
    });

    it('lets a NEW_KEY_MATERIAL import follow an abandoned one, whose version is never reused', async () => {
      const key = await externalKey();
      const first = intentOf(await reserve(key.keyId, 'new'));
      assert.equal(await store().abandonIntent(first.intentId), true);
      const second = intentOf(await reserve(key.keyId, 'new'));
      assert.equal(second.version, 2, 'the abandoned one no longer blocks, and its version is not reused');
      await assert.rejects(store().activateImport(first, { materialId: material(), ...forever }), /gone or being rolled back/);
      assert.equal(await store().activateImport(second, { materialId: material(), ...forever }), 'imported');
      assert.equal((await store().getKey(key.keyId))!.currentMaterialVersion, 2, 'the first material becomes current, whatever its number');
    });

    it('refuses an import into an unknown key, an unknown version, a key being destroyed, or a version with an import under way', async () => {
      assert.equal(await reserve(crypto.randomUUID(), 'new'), 'state');
      const { key } = await importedKey();
      assert.equal(await reserve(key.keyId, 2), 'state', 'EXISTING_KEY_MATERIAL of a version that does not exist');
      assert.equal(await reserve(key.keyId, 2 ** 31), 'state');
      const inFlight = intentOf(await reserve(key.keyId, 1));
      assert.deepEqual([inFlight.version, inFlight.purpose], [1, 'import']);
      assert.equal(await reserve(key.keyId, 1), 'busy');
      await store().deleteIntent(inFlight.intentId);
      assert.equal(await store().transitionState(key.keyId, ['Enabled'], { state: 'PendingDeletion', deletionDate: at, pendingWindowDays: 7 }), true);
      assert.equal(await store().beginDeletion(key.keyId, at), true);
      assert.equal(await reserve(key.keyId, 'new'), 'state');
      assert.equal(await reserve(key.keyId, 1), 'state');
    });

    it('discards imported material: the version PENDING_IMPORT without objects, the key PendingImport, the objects in an abandoned discard intent', async () => {
      const { key, objects } = await importedKey(expires(30, 'kept'));
      const discard = (await store().discardImportedMaterial(key.keyId, 1))!;
      assert.ok(discard, 'there was material to discard');
      assert.deepEqual([discard.keyId, discard.version, discard.purpose, discard.objects, discard.owner], [key.keyId, 1, 'discard', objects, store().ownerId]);
      assert.deepEqual((await store().listIntents()).map((i) => [i.intentId, i.purpose, i.objects]), [[discard.intentId, 'discard', objects]]);
      await assert.rejects(store().activateImport(discard, { materialId: (await store().getMaterial(key.keyId, 1))!.materialId, ...forever }), /gone or being rolled back/, 'abandoned from the start');
      assert.equal(await stateOf(key.keyId), 'PendingImport');
      const version = (await store().getMaterial(key.keyId, 1))!;
      assert.deepEqual([version.objects, version.imported], [{}, { importState: 'PENDING_IMPORT', expirationModel: 'KEY_MATERIAL_EXPIRES', validTo: later(30), description: 'kept' }]);
      assert.deepEqual((await store().listMaterials()).find((m) => m.keyId === key.keyId)!.objects, {});
      assert.equal(await store().discardImportedMaterial(key.keyId, 1), undefined, 'nothing left to discard');
      assert.equal(await reserve(key.keyId, 1), 'busy', 'until its objects are destroyed and the intent dropped');
    });

    it('reimports discarded material into its version: the objects back, the facts updated, the description kept, the key Enabled', async () => {
      const { key, materialId } = await importedKey(expires(30, 'kept'));
      const discard = (await store().discardImportedMaterial(key.keyId, 1))!;
      await store().deleteIntent(discard.intentId);
      const reimport = intentOf(await reserve(key.keyId, 1));
      await assert.rejects(store().activateImport(reimport, { materialId: material(), ...forever }), /other material/);
      assert.equal(await stateOf(key.keyId), 'PendingImport', 'the refused activation changed nothing');
      assert.equal(await store().activateImport(reimport, { materialId, ...forever }), 'imported');
      assert.equal(await stateOf(key.keyId), 'Enabled');
      const version = (await store().getMaterial(key.keyId, 1))!;
      assert.deepEqual([version.objects, version.imported], [reimport.objects, { importState: 'IMPORTED', expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE', description: 'kept' }]);
      assert.deepEqual(await store().listIntents(), []);
    });

    it('keeps a key PendingImport while any of its versions is PENDING_IMPORT', async () => {
      const { key, materialId } = await importedKey();
      const next = intentOf(await reserve(key.keyId, 'new'));
      const nextMaterial = material();
      await store().activateImport(next, { materialId: nextMaterial, ...forever });
      for (const version of [1, 2]) await store().deleteIntent((await store().discardImportedMaterial(key.keyId, version))!.intentId);
      await store().activateImport(intentOf(await reserve(key.keyId, 2)), { materialId: nextMaterial, ...forever });
      assert.equal(await stateOf(key.keyId), 'PendingImport', 'version 1 still has none');
      await store().activateImport(intentOf(await reserve(key.keyId, 1)), { materialId, ...forever });
      assert.equal(await stateOf(key.keyId), 'Enabled');
    });

    it('updates only the expiration (and a given description) when the version has its material, leaving the intent abandoned for its objects', async () => {
      const { key, materialId, objects } = await importedKey(expires(30, 'old'));
      const again = intentOf(await reserve(key.keyId, 1));
      assert.equal(await store().activateImport(again, { materialId, ...expires(60) }), 'expiry-updated');
      let version = (await store().getMaterial(key.keyId, 1))!;
      assert.deepEqual([version.objects, version.imported], [objects, { importState: 'IMPORTED', expirationModel: 'KEY_MATERIAL_EXPIRES', validTo: later(60), description: 'old' }]);
      assert.deepEqual((await store().listIntents()).map((i) => i.intentId), [again.intentId], 'left for the caller to roll back');
      await assert.rejects(store().activateImport(again, { materialId, ...forever }), /gone or being rolled back/, 'it is abandoned');
      await assert.rejects(store().discardImportedMaterial(key.keyId, 1), /import under way/, 'the version has an intent');
      await store().deleteIntent(again.intentId);
      assert.equal(await store().activateImport(intentOf(await reserve(key.keyId, 1)), { materialId, ...forever, description: 'new' }), 'expiry-updated');
      version = (await store().getMaterial(key.keyId, 1))!;
      assert.deepEqual(version.imported, { importState: 'IMPORTED', expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE', description: 'new' });
    });

    it('lists imported material due to expire, and discards it only if still expired by then', async () => {
      const soon = await importedKey(expires(10));
      const never = await importedKey(forever);
      const due = await store().materialsDueToExpire(later(10));
      assert.deepEqual(due.filter((m) => [soon.key.keyId, never.key.keyId].includes(m.keyId)), [{ keyId: soon.key.keyId, version: 1 }]);
      assert.deepEqual(await store().materialsDueToExpire(later(9)), []);
      assert.equal(await store().discardImportedMaterial(soon.key.keyId, 1, later(9)), undefined, 'not expired by then');
      assert.equal(await store().discardImportedMaterial(never.key.keyId, 1, later(1000)), undefined, 'never expires');
      assert.equal((await store().discardImportedMaterial(soon.key.keyId, 1, later(10)))!.purpose, 'discard');
      assert.deepEqual(await store().materialsDueToExpire(later(10)), [], 'discarded material is not due again');
    });

    it('leaves a key pending deletion so when its material is discarded or reimported, and a Disabled one goes PendingImport then Enabled', async () => {
      const { key, materialId } = await importedKey();
      await store().transitionState(key.keyId, ['Enabled'], { state: 'PendingDeletion', deletionDate: later(7), pendingWindowDays: 7 });
      await store().deleteIntent((await store().discardImportedMaterial(key.keyId, 1))!.intentId);
      assert.equal(await stateOf(key.keyId), 'PendingDeletion');
      await store().activateImport(intentOf(await reserve(key.keyId, 1)), { materialId, ...forever });
      assert.equal(await stateOf(key.keyId), 'PendingDeletion');
      const other = await importedKey();
      await store().transitionState(other.key.keyId, ['Enabled'], { state: 'Disabled', deletionDate: null, pendingWindowDays: null });
      await store().deleteIntent((await store().discardImportedMaterial(other.key.keyId, 1))!.intentId);
      assert.equal(await stateOf(other.key.keyId), 'PendingImport');
    });

    it('discards no material of a key being destroyed, nor lists it as due (its deletion destroys it)', async () => {
      const { key } = await importedKey(expires(1));
      await store().transitionState(key.keyId, ['Enabled'], { state: 'PendingDeletion', deletionDate: at, pendingWindowDays: 7 });
      assert.equal(await store().beginDeletion(key.keyId, at), true);
      assert.deepEqual(await store().materialsDueToExpire(later(2)), []);
      assert.equal(await store().discardImportedMaterial(key.keyId, 1), undefined);
    });

    it('imports nothing into material generated in the HSM, and discards none of it', async () => {
      const keyId = crypto.randomUUID();
      const created = await store().recordKeyIntent({ keyId, objectIds: ids(), createdAt: at });
      const generated: KeyRecord = { keyId, createdAt: at, description: '', keyUsage: 'ENCRYPT_DECRYPT', keySpec: 'SYMMETRIC_DEFAULT', origin: 'AWS_KMS', state: 'Enabled', currentMaterialVersion: 1 };
      const materialId = material();
      await store().activateKey(created, generated, materialId, []);
      assert.equal((await store().getMaterial(keyId, 1))!.imported, undefined);
      assert.equal(await store().discardImportedMaterial(keyId, 1), undefined);
      await assert.rejects(store().activateImport(intentOf(await reserve(keyId, 1)), { materialId, ...forever }), /generated in the HSM/);
    });

    function parameters(keyId: string, over: Partial<ImportParameters> = {}): ImportParameters {
      const parametersId = crypto.randomUUID();
      return {
        parametersId, keyId, wrappingKeySpec: 'RSA_2048', wrappingAlgorithm: 'RSAES_OAEP_SHA_256', tokenHash: crypto.randomBytes(32),
        objects: { private: { id: crypto.randomBytes(16).toString('hex'), label: `qkms-import/${parametersId}/private` }, public: { id: crypto.randomBytes(16).toString('hex'), label: `qkms-import/${parametersId}/public` } },
        createdAt: at, validTo: later(1), ...over,
      };
    }

    it('records import parameters, reads them back field for field, lists them all or by key in recording order, and deletes them', async () => {
      const [a, b] = [await externalKey(), await externalKey()];
      const made = [parameters(a.keyId), parameters(b.keyId, { wrappingKeySpec: 'RSA_4096', wrappingAlgorithm: 'RSA_AES_KEY_WRAP_SHA_1' }), parameters(a.keyId, { validTo: later(2) })];
      for (const p of made) await store().recordImportParameters(p);
      assert.deepEqual(await store().getImportParameters(made[1].parametersId), made[1]);
      assert.equal(await store().getImportParameters(crypto.randomUUID()), undefined);
      assert.deepEqual(await store().listImportParameters(), made);
      assert.deepEqual(await store().listImportParameters(a.keyId), [made[0], made[2]]);
      assert.deepEqual(await store().listImportParameters(crypto.randomUUID()), []);
      await store().deleteImportParameters(made[0].parametersId);
      assert.deepEqual((await store().listImportParameters()).map((p) => p.parametersId), [made[1].parametersId, made[2].parametersId]);
    });

    it('deletes an EXTERNAL key with its materials, its intents and its import parameters', async () => {
      const { key } = await importedKey();
      const keep = await externalKey();
      await store().recordImportParameters(parameters(key.keyId));
      const kept = parameters(keep.keyId);
      await store().recordImportParameters(kept);
      await store().discardImportedMaterial(key.keyId, 1);
      await store().transitionState(key.keyId, ['PendingImport'], { state: 'PendingDeletion', deletionDate: at, pendingWindowDays: 7 });
      assert.equal(await store().beginDeletion(key.keyId, at), true);
      await store().deleteKey(key.keyId);
      assert.equal(await store().getKey(key.keyId), undefined);
      assert.deepEqual([await store().listMaterialsOf(key.keyId), await store().listIntents(), await store().listImportParameters(key.keyId)], [[], [], []]);
      assert.deepEqual(await store().listImportParameters(), [kept]);
    });
  });
}
