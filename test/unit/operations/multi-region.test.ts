import assert from 'node:assert/strict';
import { runDueLifecycleWork } from '../../../src/domain/key-lifecycle';
import type { KeyRepository } from '../../../src/domain/key-repository';
import { UnsupportedOperationException, NotFoundException } from '../../../src/errors/kms-errors';
import { inRegion } from '../../../src/operations/context';
import { registry } from '../../../src/operations/registry';
import { validateInput } from '../../../src/operations/validate-input';
import { operationContext, unitDeps } from '../../support/unit-deps';

type Deps = Awaited<ReturnType<typeof unitDeps>>;

const ENV = { QKMS_REGIONS: 'us-east-1,us-west-2,eu-west-1', QKMS_ARN_FORMAT: 'aws' };
const DAY_MS = 86_400_000;

const call = (name: string, body: unknown, deps: Deps) => {
  const op = registry.get(name)!;
  return op.handle(validateInput(op.schema, body), operationContext(deps)) as Promise<Record<string, any>>;
};

async function replicatedKey(deps: Deps): Promise<string> {
  const keyId = (await call('CreateKey', { MultiRegion: true }, deps)).KeyMetadata.KeyId as string;
  await call('ReplicateKey', { KeyId: keyId, ReplicaRegion: 'us-west-2' }, deps);
  return keyId;
}

describe('Multi-Region keys over FakeHsm', () => {
  it('a region not served never reaches the store: ReplicateKey and UpdatePrimaryRegion naming one make no view of it (each would be kept for the life of the process)', async () => {
    const deps = await unitDeps(ENV);
    const keyId = await replicatedKey(deps);
    const asked: string[] = [];
    const inner = deps.keys;
    deps.keys = new Proxy(inner, {
      get: (target, prop, receiver) => (prop === 'inRegion' ? (r: string) => (asked.push(r), target.inRegion(r)) : Reflect.get(target, prop, receiver)),
    }) as KeyRepository;
    for (let i = 0; i < 3; i++) {
      await assert.rejects(call('ReplicateKey', { KeyId: keyId, ReplicaRegion: `xx-nowhere-${i}` }, deps), UnsupportedOperationException);
      await assert.rejects(call('UpdatePrimaryRegion', { KeyId: keyId, PrimaryRegion: `xx-elsewhere-${i}` }, deps), NotFoundException);
    }
    assert.deepEqual(asked.filter((r) => !deps.config.regions.includes(r)), []);
  });

  it('RetireGrant by KeyId and GrantId refuses a key ARN of another region as every KeyId does (Invalid arn), leaving the grant', async () => {
    const deps = await unitDeps(ENV);
    const keyId = await replicatedKey(deps);
    const west = inRegion(deps, 'us-west-2') as Deps;
    const root = 'arn:aws:iam::111122223333:root';
    const { GrantId } = await call('CreateGrant', { KeyId: keyId, GranteePrincipal: 'arn:aws:iam::111122223333:role/app', Operations: ['Decrypt'], RetiringPrincipal: root }, west);
    const eastArn = `arn:aws:kms:us-east-1:111122223333:key/${keyId}`;
    await assert.rejects(call('RetireGrant', { KeyId: eastArn, GrantId }, west), (e: Error) => e instanceof NotFoundException && e.message === 'Invalid arn us-east-1');
    assert.equal((await call('ListGrants', { KeyId: keyId }, west)).Grants.length, 1);
    await call('RetireGrant', { KeyId: `arn:aws:kms:us-west-2:111122223333:key/${keyId}`, GrantId }, west);
    assert.equal((await call('ListGrants', { KeyId: keyId }, west)).Grants.length, 0);
  });

  it('a primary scheduled for deletion while UpdatePrimaryRegion moves it, then the new primary scheduled too: both are deleted in the end, with the material', async () => {
    const deps = await unitDeps(ENV);
    const keyId = await replicatedKey(deps);
    const west = inRegion(deps, 'us-west-2') as Deps;
    // UpdatePrimaryRegion has read the primary (Enabled) when ScheduleKeyDeletion of it runs: the
    // schedule sees a primary with a replica (PendingReplicaDeletion), then the primary moves.
    const keyRegions = deps.keys.keyRegions.bind(deps.keys);
    let isRaced = false;
    deps.keys.keyRegions = async (id: string) => {
      if (!isRaced) {
        isRaced = true;
        await call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 }, deps);
      }
      return keyRegions(id);
    };
    await call('UpdatePrimaryRegion', { KeyId: keyId, PrimaryRegion: 'us-west-2' }, deps);
    deps.keys.keyRegions = keyRegions;
    assert.ok(isRaced);
    const scheduled = await call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 }, west);
    assert.equal(scheduled.KeyState, 'PendingReplicaDeletion', 'the new primary waits for its replica in us-east-1');

    const objects = async () => (await deps.fake.listKeyObjects('qkms/')).length;
    assert.ok((await objects()) > 0);
    for (const days of [1, 9, 17, 40]) {
      await runDueLifecycleWork({ ...deps, regions: deps.config.regions, clock: () => new Date(deps.clock().getTime() + days * DAY_MS) });
    }
    assert.deepEqual(await deps.keys.keyRegions(keyId), [], 'neither record waits for the other forever');
    assert.equal(await objects(), 0, 'the material went with the last record');
  });
});
