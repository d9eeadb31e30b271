import assert from 'node:assert/strict';
import { rotateKeyMaterial } from '../../../src/domain/key-lifecycle';
import { materialLabels } from '../../../src/domain/key-repository';
import { FaultInjectingHsm } from '../../../src/hsm/fault-injecting-hsm';
import { createKey } from '../../../src/operations/create-key';
import { operationContext, unitDeps } from '../../support/unit-deps';

describe('Key rotation', () => {
  it('serialises concurrent rotations of one key: distinct versions, no material lost', async () => {
    const deps = await unitDeps();
    const faults = new FaultInjectingHsm(deps.fake);
    const slow = { ...deps, hsm: faults.hsm };
    const out = (await createKey.handle({}, operationContext(deps))) as { KeyMetadata: { KeyId: string } };
    const key = (await deps.keys.getKey(out.KeyMetadata.KeyId))!;
    faults.add({ method: 'generateKek', times: 3, delayMs: 20 }); // lets the rotations interleave if they could
    const versions = await Promise.all([1, 2, 3].map(() => rotateKeyMaterial(slow, key, 'ON_DEMAND')));
    assert.deepEqual(versions.sort(), [2, 3, 4]);
    for (const v of [1, 2, 3, 4]) {
      const labels = materialLabels(key.keyId, v);
      assert.ok(deps.fake.keys.has(labels.kek) && deps.fake.keys.has(labels.mac), `version ${v} is on the token`);
    }
    assert.equal((await deps.keys.getKey(key.keyId))!.currentMaterialVersion, 4);
  });
});
