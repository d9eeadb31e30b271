/**
 * npm run bench:keys — GenerateDataKey throughput with one key on the token, then with
 * BENCH_KEYS (default 10000) more keys' material on it (issue #5 target: >= 0.95 x). The extra
 * keys' objects are made by a second process while the gateway runs, as a busy token would be.
 */
import autocannon from 'autocannon';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { materialObjects, newObjectIds } from '../src/domain/key-repository';
import { Pkcs11Hsm } from '../src/hsm/pkcs11/pkcs11-hsm';
import { CREDENTIALS, signedRequest, startGatewayProcess } from './gateway-process';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
const EXTRA_KEYS = Number(process.env.BENCH_KEYS ?? 10000);
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);

/** GenerateDataKey at c=16 on a fresh gateway and token, after `extraKeys` keys' material was added to the token. */
async function measure(extraKeys: number): Promise<{ rps: number; p99: number; errors: number }> {
  const gw = await startGatewayProcess();
  try {
    const kms = new KMSClient({ endpoint: gw.url, region: 'us-east-1', credentials: CREDENTIALS, maxAttempts: 1 });
    const keyId = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    kms.destroy();
    await addKeys(gw.token, extraKeys);
    const r = await autocannon({ url: gw.url, connections: 16, duration: DURATION_S, requests: [await signedRequest(gw.url, 'GenerateDataKey', { KeyId: keyId, KeySpec: 'AES_256' })] });
    return { rps: r.requests.average, p99: r.latency.p99, errors: r.errors + r.timeouts + r.non2xx };
  } finally {
    await gw.stop();
  }
}

/** The token objects of `count` keys (KEK + MAC each), made from this process on the gateway's token. */
async function addKeys(token: { modulePath: string; label: string; pin: string }, count: number): Promise<void> {
  if (count === 0) return;
  const hsm = await Pkcs11Hsm.open({ modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, sessions: 1 });
  const started = Date.now();
  for (let i = 0; i < count; i++) {
    const objects = materialObjects(`00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, 1, newObjectIds('SYMMETRIC_DEFAULT'));
    await hsm.generateKek(objects.kek);
    await hsm.generateMacKey(objects.mac);
  }
  process.stderr.write(`made ${count * 2} token objects in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  await hsm.close();
}

async function main(): Promise<void> {
  const one = await measure(0);
  process.stderr.write(`1 key: ${one.rps.toFixed(0)} req/s, p99 ${one.p99} ms\n`);
  const many = await measure(EXTRA_KEYS);
  process.stdout.write(`${JSON.stringify({ concurrency: 16, durationS: DURATION_S, oneKey: one, extraKeys: EXTRA_KEYS, withExtraKeys: many, ratio: Number((many.rps / one.rps).toFixed(3)) })}\n`);
}

void main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
