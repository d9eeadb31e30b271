import assert from 'node:assert/strict';
import * as kms from '@aws-sdk/client-kms';
import type { ChildGateway } from '../support/child-gateway';
import { TEST_CREDENTIALS } from '../support/harness';
import { skipWithoutPostgres } from '../support/postgres';
import { freshDeployment, type Deployment } from '../support/replicas';
import { recordSecretsMiddleware } from '../support/secrets';
import { KMS_OPERATION_STEPS } from '../support/token-matrix-steps';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A client whose every attempt goes to the next replica, as a round-robin load balancer sends it:
 * the hop is made after the retry middleware and before signing, so a retry goes elsewhere and
 * each attempt is signed for the host it reaches. Like a balancer (HAProxy's redispatch on a
 * connection failure, deploy/haproxy.cfg), a replica that refuses the connection is passed over:
 * the request never reached it.
 */
function roundRobinClient(replicas: ChildGateway[], maxAttempts: number): kms.KMSClient {
  const client = new kms.KMSClient({ endpoint: replicas[0].url, region: 'us-east-1', credentials: TEST_CREDENTIALS, maxAttempts });
  let next = 0;
  client.middlewareStack.addRelativeTo(
    (handler: (args: any) => Promise<any>) => async (args: any) => {
      for (let tried = 1; ; tried++) {
        const target = new URL(replicas[next++ % replicas.length].url);
        args.request.hostname = target.hostname;
        args.request.port = Number(target.port);
        args.request.headers.host = target.host;
        try {
          return await handler(args);
        } catch (err) {
          if ((err as { code?: string }).code !== 'ECONNREFUSED' || tried >= replicas.length) throw err;
        }
      }
    },
    { relation: 'before', toMiddleware: 'httpSigningMiddleware', name: 'qkmsRoundRobin' },
  );
  recordSecretsMiddleware(client);
  return client;
}

describe('Three replicas behind a round-robin balancer', function () {
  this.timeout(180_000);
  let deployment: Deployment;
  let replicas: ChildGateway[];
  before(async function () {
    skipWithoutPostgres(this);
    deployment = await freshDeployment();
    replicas = await deployment.start(['rr1', 'rr2', 'rr3']);
  });
  after(async () => deployment?.close());

  it('serve every KMS operation of the token matrix with consecutive requests on different replicas, as one gateway does', async () => {
    const client = roundRobinClient(replicas, 1);
    const state = new Map<string, string>();
    const unsupported: string[] = [];
    for (const step of KMS_OPERATION_STEPS) {
      if ((step.needs ?? []).some((n) => !state.has(n))) continue;
      try {
        await step.run(client, state);
      } catch (err) {
        if (!(err instanceof kms.UnsupportedOperationException)) throw new Error(`${step.name}: ${(err as Error).name}: ${(err as Error).message}`, { cause: err });
        unsupported.push(step.name);
      }
    }
    // SoftHSM2 serves every step on one gateway (docs/hsm/README.md), so on three as well.
    assert.deepEqual(unsupported, []);
    client.destroy();
  });

  it('a replica killed with SIGKILL under load: clients that retry see no failure, and every acknowledged ciphertext decrypts on the survivors', async () => {
    const client = roundRobinClient(replicas, 4);
    const keyId = (await client.send(new kms.CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    const made: Array<{ blob: Uint8Array; text: string }> = [];
    let i = 0;
    const load = async (until: number) => {
      while (Date.now() < until) {
        const text = `acknowledged ${i++}`;
        made.push({ blob: (await client.send(new kms.EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from(text), EncryptionContext: { n: text } }))).CiphertextBlob!, text });
      }
    };
    const loaded = Promise.all(Array.from({ length: 4 }, () => load(Date.now() + 3000)));
    await sleep(800);
    await replicas[1].stop('SIGKILL');
    await loaded; // rejects if any request failed beyond its retries
    assert.ok(made.length > 20, `${made.length} ciphertexts acknowledged`);
    const survivors = roundRobinClient([replicas[0], replicas[2]], 1);
    for (const { blob, text } of made) {
      const out = await survivors.send(new kms.DecryptCommand({ CiphertextBlob: blob, EncryptionContext: { n: text } }));
      assert.equal(Buffer.from(out.Plaintext!).toString(), text);
    }
    client.destroy();
    survivors.destroy();
  });
});
