import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KMSClient, ListKeysCommand } from '@aws-sdk/client-kms';
import { integration } from '../support/integration-hooks';
import { registerSecret } from '../support/secrets';
import { startGateway, TEST_CREDENTIALS, type Harness } from '../support/harness';

describe('Per-principal rate limits', () => {
  let gw: Harness;
  let dir: string;
  const alice = { accessKeyId: 'AKIAQKMSALICE000004', secretAccessKey: 'alice-secret-0123456789abcdef' };
  const fast = { accessKeyId: 'AKIAQKMSFAST0000004', secretAccessKey: 'fast-secret-0123456789abcdef' };
  for (const c of [alice, fast]) registerSecret(c.secretAccessKey);
  const allowAll = { Statement: [{ Effect: 'Allow', Action: 'kms:*', Resource: '*' }] };

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-rate-'));
    const file = path.join(dir, 'credentials.json');
    fs.writeFileSync(file, JSON.stringify({ principals: [
      { ...alice, principalArn: 'arn:aws:iam::111122223333:user/alice', policy: allowAll },
      { ...fast, principalArn: 'arn:aws:iam::111122223333:user/fast', policy: allowAll, rateLimitPerSecond: 0 },
    ] }));
    gw = await startGateway(integration().hsm, { QKMS_CREDENTIALS_FILE: file, QKMS_RATE_LIMIT_PER_SECOND: '5' });
  });
  after(async () => {
    await gw.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const burst = async (credentials: typeof alice, n: number) => {
    const client = new KMSClient({ endpoint: gw.url, region: 'us-east-1', credentials: { ...credentials }, maxAttempts: 1 });
    const results = await Promise.allSettled(Array.from({ length: n }, () => client.send(new ListKeysCommand({}))));
    return results.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as Error).name));
  };

  it('throttles a principal past its rate with ThrottlingException, without affecting the others', async () => {
    const a = await burst(alice, 20);
    assert.ok(a.filter((x) => x === 'ok').length >= 5);
    assert.ok(a.filter((x) => x === 'ThrottlingException').length >= 10, a.join(','));
    assert.deepEqual([...new Set(a)].sort(), ['ThrottlingException', 'ok']);
    const admin = await burst(TEST_CREDENTIALS, 5);
    assert.deepEqual(admin, ['ok', 'ok', 'ok', 'ok', 'ok'], 'the admin has its own bucket');
    assert.deepEqual([...new Set(await burst(fast, 30))], ['ok'], 'rateLimitPerSecond 0 in the credentials file: unlimited');
  });

  it('refills: after a second the principal may call again', async () => {
    await new Promise((r) => setTimeout(r, 1100));
    assert.deepEqual(await burst(alice, 3), ['ok', 'ok', 'ok']);
  });
});
