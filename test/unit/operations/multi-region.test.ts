import assert from 'node:assert/strict';
import type { KeyRepository } from '../../../src/domain/key-repository';
import { UnsupportedOperationException, NotFoundException } from '../../../src/errors/kms-errors';
import { registry } from '../../../src/operations/registry';
import { validateInput } from '../../../src/operations/validate-input';
import { operationContext, unitDeps } from '../../support/unit-deps';

type Deps = Awaited<ReturnType<typeof unitDeps>>;

const ENV = { QKMS_REGIONS: 'us-east-1,us-west-2,eu-west-1', QKMS_ARN_FORMAT: 'aws' };

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
});
