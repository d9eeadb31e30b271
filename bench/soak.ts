/**
 * npm run soak — the gateway under sustained load: SOAK_CONCURRENCY (default 256) connections for
 * SOAK_DURATION_S (default 60) seconds of GenerateDataKey, Decrypt and Encrypt requests in turn,
 * then a report of errors, latency and the gateway's RSS before, after every 240 s chunk and at the
 * end (SOAK_DURATION_S=1100 is about a million requests here). Exit 1 on any error.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import autocannon from 'autocannon';
import { CreateKeyCommand, GenerateDataKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { CREDENTIALS, signedRequest, startGatewayProcess } from './gateway-process';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
const DURATION_S = Number(process.env.SOAK_DURATION_S ?? 60);
const CONNECTIONS = Number(process.env.SOAK_CONCURRENCY ?? 256);

function rssMiB(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

async function main(): Promise<void> {
  const gateway = await startGatewayProcess();
  try {
    const kms = new KMSClient({ endpoint: gateway.url, region: 'us-east-1', credentials: CREDENTIALS, maxAttempts: 1 });
    const keyId = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    const blob = Buffer.from((await kms.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }))).CiphertextBlob!).toString('base64');
    kms.destroy();
    const all = [
      await signedRequest(gateway.url, 'GenerateDataKey', { KeyId: keyId, KeySpec: 'AES_256' }),
      await signedRequest(gateway.url, 'Decrypt', { CiphertextBlob: blob }),
      await signedRequest(gateway.url, 'Encrypt', { KeyId: keyId, Plaintext: crypto.randomBytes(4096).toString('base64') }),
    ];
    // SOAK_OPS=Encrypt (or any subset) narrows the mix, e.g. to tell HSM-object growth from the rest.
    const wanted = (process.env.SOAK_OPS ?? 'GenerateDataKey,Decrypt,Encrypt').split(',');
    const requests = all.filter((r) => wanted.includes(r.headers['x-amz-target'].split('.')[1]));
    const rssBefore = rssMiB(gateway.child.pid!);
    const rssSeries: Array<{ requests: number; rssMiB: number }> = [];
    // Requests are signed once; past the 5-minute SigV4 window they would be refused, so long soaks re-sign.
    let total = { requests: 0, errors: 0, p99: 0, max: 0, lastRunRps: 0 };
    const kinds: Record<string, number> = {};
    for (let left = DURATION_S; left > 0; left -= 240) {
      const fresh = await Promise.all(requests.map((r) => signedRequest(gateway.url, r.headers['x-amz-target'].split('.')[1], JSON.parse(r.body))));
      const r = await autocannon({ url: gateway.url, connections: CONNECTIONS, duration: Math.min(left, 240), requests: fresh });
      for (const [k, v] of Object.entries({ connectionErrors: r.errors, timeouts: r.timeouts, non2xx: r.non2xx })) kinds[k] = (kinds[k] ?? 0) + v;
      for (const [code, stat] of Object.entries(r.statusCodeStats ?? {})) if (code !== '200') kinds[`status ${code}`] = (kinds[`status ${code}`] ?? 0) + (stat as { count: number }).count;
      total = {
        requests: total.requests + r.requests.total,
        errors: total.errors + r.errors + r.timeouts + r.non2xx,
        p99: Math.max(total.p99, r.latency.p99),
        max: Math.max(total.max, r.latency.max),
        lastRunRps: r.requests.average,
      };
      rssSeries.push({ requests: total.requests, rssMiB: Math.round(rssMiB(gateway.child.pid!)) });
      process.stderr.write(`${total.requests} requests, ${total.errors} errors, RSS ${rssSeries.at(-1)!.rssMiB} MiB\n`);
    }
    const rssAfter = rssMiB(gateway.child.pid!);
    // Growth after the first chunk separates a leak from warm-up (JIT, pools, the HSM thread's heap).
    const afterWarmUp = rssSeries.length > 1 ? { fromRequests: rssSeries[0].requests, growthMiB: Math.round(rssAfter - rssSeries[0].rssMiB) } : undefined;
    const report = { connections: CONNECTIONS, durationS: DURATION_S, ...total, errorKinds: kinds, rssBeforeMiB: Math.round(rssBefore), rssAfterMiB: Math.round(rssAfter), rssSeries, afterWarmUp };
    process.stdout.write(`${JSON.stringify(report)}\n`);
    if (total.errors > 0) process.exitCode = 1;
  } finally {
    await gateway.stop();
  }
}

void main().catch((err) => {
  process.stderr.write(`soak failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
