import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Client } from 'pg';
import type { Grant, KeyRecord, KeyRepository } from '../../src/domain/key-repository';
import { PostgresKeyRepository } from '../../src/store/postgres-key-repository';
import { sharedPostgres, skipWithoutPostgres } from '../support/postgres';

const at = new Date('2026-11-29T12:00:00Z');
/** Calls per race: with two pools of ten, up to twenty transactions are in flight at once. */
const RACERS = 30;

/**
 * Two stores on one database, each with its own pool, as two gateway replicas have: every
 * check-then-act of the repository raced from both at once. Each race alternates its calls
 * between the two and starts them all before awaiting any.
 */
describe('PostgresKeyRepository under concurrent replicas', function () {
  let replicas: [PostgresKeyRepository, PostgresKeyRepository];
  before(async function () {
    skipWithoutPostgres(this);
    const url = await (await sharedPostgres()).createDatabase('races');
    replicas = [await PostgresKeyRepository.open(url), await PostgresKeyRepository.open(url)];
  });
  after(async () => {
    for (const r of replicas ?? []) await r.close();
  });

  /** Runs `call` RACERS times, alternately on each replica, all started before any is awaited. */
  function race<T>(call: (store: KeyRepository, i: number) => Promise<T>): Promise<T[]> {
    return Promise.all(Array.from({ length: RACERS }, (_, i) => call(replicas[i % 2], i)));
  }

  async function createKey(store: KeyRepository = replicas[0]): Promise<string> {
    const keyId = crypto.randomUUID();
    const key: KeyRecord = { keyId, createdAt: at, description: '', keyUsage: 'ENCRYPT_DECRYPT', keySpec: 'SYMMETRIC_DEFAULT', origin: 'AWS_KMS', state: 'Enabled', currentMaterialVersion: 1 };
    const intent = await store.recordKeyIntent({ keyId, objectIds: { kek: '01'.repeat(16), mac: '02'.repeat(16) }, createdAt: at });
    await store.activateKey(intent, key, '03'.repeat(32), []);
    return keyId;
  }
  const ids = () => ({ kek: crypto.randomBytes(16).toString('hex'), mac: crypto.randomBytes(16).toString('hex') });
  const count = <T>(xs: T[], x: T) => xs.filter((y) => y === x).length;

  it('creates an alias name once when both replicas create it for different keys at once', async () => {
    const keys = [await createKey(), await createKey()];
    for (let round = 0; round < 5; round++) {
      const aliasName = `alias/race-${round}`;
      const results = await race((s, i) => s.insertAlias({ aliasName, targetKeyId: keys[i % 2], createdAt: at, lastUpdatedAt: at }, 50));
      assert.deepEqual([count(results, 'created'), count(results, 'taken')], [1, RACERS - 1]);
    }
  });

  it('lets exactly one of many concurrent state changes from one state win', async () => {
    for (let round = 0; round < 5; round++) {
      const keyId = await createKey();
      const results = await race((s, i) =>
        s.transitionState(keyId, ['Enabled'], i % 3 === 0 ? { state: 'PendingDeletion', deletionDate: at, pendingWindowDays: 7 } : { state: 'Disabled', deletionDate: null, pendingWindowDays: null }),
      );
      assert.equal(count(results, true), 1);
    }
  });

  it('lets the scheduler claim a due deletion once when both replicas run it', async () => {
    const keyId = await createKey();
    await replicas[0].transitionState(keyId, ['Enabled'], { state: 'PendingDeletion', deletionDate: at, pendingWindowDays: 7 });
    assert.equal(count(await race((s) => s.beginDeletion(keyId, at)), true), 1);
  });

  it('reserves distinct, gapless version numbers for concurrent rotations of one key', async () => {
    const keyId = await createKey();
    const results = await race((s) => s.reserveVersion(keyId, { rotationType: 'ON_DEMAND', objectIds: ids(), createdAt: at }));
    const versions = results.map((r) => (typeof r === 'string' ? r : r.version)).sort((a, b) => Number(a) - Number(b));
    assert.deepEqual(versions, Array.from({ length: RACERS }, (_, i) => i + 2));
  });

  it('never exceeds the on-demand rotation quota under concurrent rotations', async () => {
    const keyId = await createKey();
    const results = await race((s) => s.reserveVersion(keyId, { rotationType: 'ON_DEMAND', objectIds: ids(), createdAt: at, onDemandLimit: 3 }));
    assert.equal(results.filter((r) => typeof r !== 'string').length, 3);
    assert.equal(count(results, 'quota'), RACERS - 3);
    assert.equal((await replicas[1].listIntents()).filter((i) => i.keyId === keyId).length, 3);
  });

  it('never exceeds a key\'s alias quota under concurrent CreateAlias of different names', async () => {
    const keyId = await createKey();
    const results = await race((s, i) => s.insertAlias({ aliasName: `alias/quota-${keyId}-${i}`, targetKeyId: keyId, createdAt: at, lastUpdatedAt: at }, 5));
    assert.deepEqual([count(results, 'created'), count(results, 'quota')], [5, RACERS - 5]);
    assert.equal(await replicas[1].countAliases(keyId), 5);
  });

  it('never exceeds a key\'s alias quota when aliases are created and moved onto it at once', async () => {
    const [full, other] = [await createKey(), await createKey()];
    for (let i = 0; i < RACERS; i++) await replicas[0].insertAlias({ aliasName: `alias/move-${full}-${i}`, targetKeyId: other, createdAt: at, lastUpdatedAt: at }, 50);
    const results = await race((s, i) =>
      i % 2 === 0
        ? s.retargetAlias(`alias/move-${full}-${i}`, full, at, 5)
        : s.insertAlias({ aliasName: `alias/new-${full}-${i}`, targetKeyId: full, createdAt: at, lastUpdatedAt: at }, 5).then((r) => r === 'created'),
    );
    assert.equal(count(results, true), 5);
    assert.equal(await replicas[1].countAliases(full), 5);
  });

  it('never exceeds a key\'s grant quota under concurrent CreateGrant', async () => {
    const keyId = await createKey();
    const grant = (): Grant => ({ grantId: crypto.randomBytes(32).toString('hex'), keyId, granteePrincipal: 'arn:aws:iam::111122223333:role/app', issuingAccount: 'arn:aws:iam::111122223333:root', operations: ['Decrypt'], createdAt: at });
    const results = await race((s) => s.insertGrant(grant(), crypto.randomBytes(32), 7).then((r) => r !== 'quota'));
    assert.equal(count(results, true), 7);
    assert.equal(await replicas[1].countGrants(keyId), 7);
  });

  it('makes one grant of concurrent CreateGrants with one Name and the same parameters (each gets a token for it)', async () => {
    const keyId = await createKey();
    const named = (): Grant => ({ grantId: crypto.randomBytes(32).toString('hex'), keyId, name: 'retried', granteePrincipal: 'arn:aws:iam::111122223333:role/app', issuingAccount: 'arn:aws:iam::111122223333:root', operations: ['Decrypt'], createdAt: at });
    const same = (g: Grant) => g.granteePrincipal === 'arn:aws:iam::111122223333:role/app' && g.operations.join() === 'Decrypt';
    const ids = await race((s) => s.insertGrant(named(), crypto.randomBytes(32), 100, same));
    assert.equal(new Set(ids).size, 1, 'every call got the one grant');
    assert.equal(await replicas[0].countGrants(keyId), 1);
    assert.equal((await replicas[1].grantTokenHashes(ids[0] as string)).length, ids.length, 'each call added its token');
  });

  /** An EXTERNAL key with version 1 imported (current, Enabled). */
  async function importedKey(materialId: string): Promise<string> {
    const keyId = crypto.randomUUID();
    await replicas[0].insertExternalKey({ keyId, createdAt: at, description: '', keyUsage: 'ENCRYPT_DECRYPT', keySpec: 'SYMMETRIC_DEFAULT', origin: 'EXTERNAL', state: 'PendingImport', currentMaterialVersion: 0 }, []);
    const intent = await replicas[0].reserveImport(keyId, { version: 'new', objectIds: ids(), createdAt: at });
    assert.ok(typeof intent === 'object' && 'intentId' in intent);
    await replicas[0].activateImport(intent, { materialId, expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' });
    return keyId;
  }

  it('lets one of many concurrent NEW_KEY_MATERIAL imports into one key have a version, first import or not', async () => {
    const first = crypto.randomUUID();
    await replicas[0].insertExternalKey({ keyId: first, createdAt: at, description: '', keyUsage: 'ENCRYPT_DECRYPT', keySpec: 'SYMMETRIC_DEFAULT', origin: 'EXTERNAL', state: 'PendingImport', currentMaterialVersion: 0 }, []);
    for (const keyId of [first, await importedKey('04'.repeat(32))]) {
      const results = await race((s) => s.reserveImport(keyId, { version: 'new', objectIds: ids(), createdAt: at }));
      assert.equal(results.filter((r) => typeof r === 'object' && 'intentId' in r).length, 1);
      assert.equal(count(results, 'busy'), RACERS - 1);
    }
  });

  it('moves a key to Enabled when concurrent reimports restore all of its PENDING_IMPORT versions', async () => {
    for (let round = 0; round < 5; round++) {
      const keyId = await importedKey('05'.repeat(32));
      const next = await replicas[0].reserveImport(keyId, { version: 'new', objectIds: ids(), createdAt: at });
      assert.ok(typeof next === 'object' && 'intentId' in next);
      await replicas[0].activateImport(next, { materialId: '06'.repeat(32), expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' });
      for (const version of [1, 2]) await replicas[0].deleteIntent((await replicas[0].discardImportedMaterial(keyId, version))!.intentId);
      const reimports = await Promise.all([1, 2].map((version) => replicas[version - 1].reserveImport(keyId, { version, objectIds: ids(), createdAt: at })));
      await Promise.all(reimports.map((intent, i) => {
        assert.ok(typeof intent === 'object' && 'intentId' in intent);
        return replicas[i].activateImport(intent, { materialId: ['05', '06'][i].repeat(32), expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' });
      }));
      assert.equal((await replicas[1].getKey(keyId))!.state, 'Enabled');
    }
  });

  /** A multi-Region key with a record in each of `regions` (the first holds the primary), made through replica 0. */
  async function multiRegionKey(regions: string[]): Promise<string> {
    const keyId = `mrk-${crypto.randomBytes(16).toString('hex')}`;
    const [primary, ...others] = regions.map((r) => replicas[0].inRegion(r));
    const key: KeyRecord = { keyId, createdAt: at, description: '', keyUsage: 'ENCRYPT_DECRYPT', keySpec: 'SYMMETRIC_DEFAULT', origin: 'AWS_KMS', state: 'Enabled', currentMaterialVersion: 1, primaryRegion: primary.region };
    await primary.activateKey(await primary.recordKeyIntent({ keyId, objectIds: ids(), createdAt: at }), key, '03'.repeat(32), []);
    for (const view of others) assert.equal(await view.insertReplica(key, []), 'created');
    return keyId;
  }
  /** Each region's record PendingDeletion, due at `at`, and claimed by the scheduler. */
  async function beginDeletions(keyId: string, regions: string[]): Promise<void> {
    for (const view of regions.map((r) => replicas[0].inRegion(r))) {
      assert.equal(await view.transitionState(keyId, ['Enabled'], { state: 'PendingDeletion', deletionDate: at, pendingWindowDays: 7 }), true);
      assert.equal(await view.beginDeletion(keyId, at), true);
    }
  }

  it('removes one of a key\'s last two records when two regions\' schedulers remove theirs at once: the other finds its own the last', async () => {
    const regions = ['eu-west-1', 'us-east-1'];
    for (let round = 0; round < 20; round++) {
      const keyId = await multiRegionKey(regions);
      await beginDeletions(keyId, regions);
      const results = await Promise.all(regions.map((r, i) => replicas[i].inRegion(r).deleteRegionRecord(keyId)));
      assert.equal(count(results, true), 1, `round ${round}: ${JSON.stringify(results)}`);
      const left = await replicas[1].keyRegions(keyId);
      assert.deepEqual(left.map((l) => l.region), [regions[results.indexOf(false)]], 'the record that answered false is the one left, for deleteKey');
      await replicas[1].inRegion(left[0].region).deleteKey(keyId);
    }
  });

  it('leaves exactly one record when every region of a key removes its record at once', async () => {
    const regions = ['ap-southeast-2', 'eu-west-1', 'us-east-1', 'us-west-2'];
    for (let round = 0; round < 10; round++) {
      const keyId = await multiRegionKey(regions);
      await beginDeletions(keyId, regions);
      const results = await Promise.all(regions.flatMap((r) => replicas.map((s) => s.inRegion(r).deleteRegionRecord(keyId))));
      assert.equal(count(results, true), regions.length - 1, JSON.stringify(results));
      assert.equal((await replicas[0].keyRegions(keyId)).length, 1);
    }
  });

  it('never makes a replica of a key while its last record is removed: the scheduler destroys the material next', async () => {
    for (let round = 0; round < 40; round++) {
      const keyId = await multiRegionKey(['us-east-1']);
      await beginDeletions(keyId, ['us-east-1']);
      const key = (await replicas[0].getKey(keyId))!;
      // The removal starts 0 to 7 ms after the replication: either may take the locks first.
      const removal = new Promise<boolean>((resolve, reject) => setTimeout(() => replicas[0].deleteRegionRecord(keyId).then(resolve, reject), round % 8));
      const [replicated, removed] = await Promise.all([replicas[1].inRegion('eu-west-1').insertReplica(key, []), removal]);
      assert.deepEqual([removed, replicated, (await replicas[0].keyRegions(keyId)).map((l) => l.region)], [false, 'gone', ['us-east-1']], `round ${round}`);
    }
  });

  it('creates one replica of concurrent ReplicateKeys into one region', async () => {
    const keyId = await multiRegionKey(['us-east-1']);
    const key = (await replicas[0].getKey(keyId))!;
    const results = await race((s) => s.inRegion('eu-west-1').insertReplica(key, [{ key: 'k', value: 'v' }]));
    assert.deepEqual([count(results, 'created'), count(results, 'exists')], [1, RACERS - 1]);
    assert.deepEqual(await replicas[1].inRegion('eu-west-1').listTags(keyId), [{ key: 'k', value: 'v' }]);
  });

  it('reserves distinct, gapless versions for concurrent rotations of a multi-Region key from every region (no deadlock between regions)', async () => {
    const regions = ['ap-southeast-2', 'eu-west-1', 'us-east-1'];
    const keyId = await multiRegionKey(regions);
    const results = await race((s, i) => s.inRegion(regions[i % regions.length]).reserveVersion(keyId, { rotationType: 'ON_DEMAND', objectIds: ids(), createdAt: at }));
    const versions = results.map((r) => (typeof r === 'string' ? r : r.version)).sort((a, b) => Number(a) - Number(b));
    assert.deepEqual(versions, Array.from({ length: RACERS }, (_, i) => i + 2));
    await Promise.all(results.map((r, i) => typeof r !== 'string' && replicas[i % 2].inRegion(regions[i % regions.length]).activateRotation(r, crypto.randomBytes(32).toString('hex'))));
    for (const region of regions) assert.equal((await replicas[0].inRegion(region).getKey(keyId))!.currentMaterialVersion, RACERS + 1, region);
  });

  it('records usage batches of the same records in opposite orders at once while some of the records are removed: no deadlock, the removed ones dropped', async () => {
    const regions = ['eu-west-1', 'us-east-1'];
    for (let round = 0; round < 5; round++) {
      const keyIds = await Promise.all(Array.from({ length: 10 }, () => multiRegionKey(regions)));
      const doomed = keyIds.slice(0, 5);
      for (const keyId of doomed) await beginDeletions(keyId, ['eu-west-1']);
      const entries = keyIds.flatMap((keyId, k) => regions.map((region) => ({ keyId, region, operation: 'Encrypt', at: new Date(at.getTime() + k), requestId: `r-${k}` })));
      const calls = await race(async (s, i) => {
        if (i % 6 === 0) return s.inRegion('eu-west-1').deleteRegionRecord(doomed[i / 6]);
        await s.recordKeyUsage(i % 2 === 0 ? entries : [...entries].reverse());
        return undefined;
      });
      assert.equal(count(calls, true), doomed.length);
      for (const [k, keyId] of keyIds.entries()) {
        assert.equal((await replicas[0].inRegion('us-east-1').getKeyUsage(keyId)).usage?.requestId, `r-${k}`);
        assert.equal((await replicas[0].inRegion('eu-west-1').getKeyUsage(keyId)).usage?.requestId, k < doomed.length ? undefined : `r-${k}`);
      }
    }
  });

  it('migrates a fresh database exactly once when several replicas open it at once', async () => {
    const url = await (await sharedPostgres()).createDatabase('first_open');
    const opened = await Promise.all(Array.from({ length: 6 }, () => PostgresKeyRepository.open(url, { poolSize: 2 })));
    try {
      assert.equal(opened.filter((s) => s.isNew).length, 1, 'one of them created the schema');
      const admin = new Client({ connectionString: url });
      await admin.connect();
      try {
        const { rows } = await admin.query<{ version: number; n: number }>('SELECT version, count(*)::int AS n FROM qkms_schema GROUP BY version ORDER BY version');
        assert.ok(rows.length > 0 && rows.every((r, i) => r.version === i + 1 && r.n === 1), JSON.stringify(rows));
      } finally {
        await admin.end();
      }
      const keyId = await createKey(opened[5]);
      assert.ok(await opened[0].getKey(keyId), 'all of them use the one schema');
    } finally {
      for (const s of opened) await s.close();
    }
  });
});
