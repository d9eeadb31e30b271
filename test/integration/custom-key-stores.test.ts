import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import {
  ConnectCustomKeyStoreCommand,
  CreateCustomKeyStoreCommand,
  CreateKeyCommand,
  CustomKeyStoreNotFoundException,
  CloudHsmClusterNotFoundException,
  DeleteCustomKeyStoreCommand,
  DescribeCustomKeyStoresCommand,
  DisconnectCustomKeyStoreCommand,
  GenerateRandomCommand,
  UpdateCustomKeyStoreCommand,
} from '@aws-sdk/client-kms';
import { integration } from '../support/integration-hooks';
import { startGateway, TEST_CREDENTIALS, type Harness } from '../support/harness';

const run = promisify(execFile);

/**
 * The custom key store operations answer as AWS answers an account that has none
 * (src/operations/custom-key-stores.ts), through the JS SDK v3 and boto3, not UnknownOperationException.
 */
describe('Custom key store operations (none exists here)', function () {
  this.timeout(60000);
  let gw: Harness;
  before(async () => {
    gw = await startGateway(integration().hsm);
  });
  after(() => gw.close());

  it('JS SDK v3: DescribeCustomKeyStores lists none; every id or name is CustomKeyStoreNotFoundException; a CloudHSM store cannot be created', async () => {
    assert.deepEqual((await gw.client.send(new DescribeCustomKeyStoresCommand({}))).CustomKeyStores, []);
    const id = 'cks-1234567890abcdef0';
    for (const command of [
      new DescribeCustomKeyStoresCommand({ CustomKeyStoreId: id }),
      new DescribeCustomKeyStoresCommand({ CustomKeyStoreName: 'mine' }),
      new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: id }),
      new DisconnectCustomKeyStoreCommand({ CustomKeyStoreId: id }),
      new DeleteCustomKeyStoreCommand({ CustomKeyStoreId: id }),
      new UpdateCustomKeyStoreCommand({ CustomKeyStoreId: id, NewCustomKeyStoreName: 'other' }),
      new CreateKeyCommand({ CustomKeyStoreId: id, Origin: 'AWS_CLOUDHSM' }),
      new GenerateRandomCommand({ NumberOfBytes: 8, CustomKeyStoreId: id }),
    ]) {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      await assert.rejects(gw.client.send(command as any), CustomKeyStoreNotFoundException, command.constructor.name);
    }
    await assert.rejects(gw.client.send(new CreateCustomKeyStoreCommand({ CustomKeyStoreName: 'mine', CloudHsmClusterId: 'cluster-1234567890a' })), CloudHsmClusterNotFoundException);
    await assert.rejects(gw.client.send(new CreateCustomKeyStoreCommand({ CustomKeyStoreName: 'xks', CustomKeyStoreType: 'EXTERNAL_KEY_STORE' })), (e: Error) => e.name === 'UnsupportedOperationException');
  });

  it('boto3: describe_custom_key_stores lists none, and the others raise the modelled exceptions', async function () {
    const python = ['/usr/bin/python3', 'python3'].find((py) => spawnSync(py, ['-c', 'import boto3']).status === 0);
    if (!python) this.skip(); // python3-boto3 not installed: .ci/run installs it
    const script = `
import json, sys, boto3
kms = boto3.client('kms', endpoint_url=sys.argv[1], region_name='us-east-1')
out = {'stores': kms.describe_custom_key_stores()['CustomKeyStores'], 'errors': []}
for call in (lambda: kms.connect_custom_key_store(CustomKeyStoreId='cks-1234567890abcdef0'),
             lambda: kms.delete_custom_key_store(CustomKeyStoreId='cks-1234567890abcdef0'),
             lambda: kms.create_custom_key_store(CustomKeyStoreName='mine', CloudHsmClusterId='cluster-1234567890a')):
    try:
        call()
    except kms.exceptions.CustomKeyStoreNotFoundException:
        out['errors'].append('CustomKeyStoreNotFoundException')
    except kms.exceptions.CloudHsmClusterNotFoundException:
        out['errors'].append('CloudHsmClusterNotFoundException')
print(json.dumps(out))
`;
    const env = { ...process.env, AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey, AWS_EC2_METADATA_DISABLED: 'true' };
    const out = JSON.parse((await run(python!, ['-c', script, gw.url], { env })).stdout);
    assert.deepEqual(out, { stores: [], errors: ['CustomKeyStoreNotFoundException', 'CustomKeyStoreNotFoundException', 'CloudHsmClusterNotFoundException'] });
  });
});
