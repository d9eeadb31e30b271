import assert from 'node:assert/strict';
import {
  AlreadyExistsException, CreateAliasCommand, CreateKeyCommand, DecryptCommand, DisabledException, DisableKeyCommand, EncryptCommand, ListAliasesCommand, ListKeysCommand,
} from '@aws-sdk/client-kms';
import { AUDIT_MAC_KEY } from '../../src/audit/audit-record';
import { MARKER_MAC_KEY } from '../../src/domain/marker';
import type { ChildGateway } from '../support/child-gateway';
import { Client } from 'pg';
import { MIGRATION_LOCK } from '../../src/store/postgres-migrations';
import { skipWithoutPostgres } from '../support/postgres';
import { freshDeployment, type Deployment } from '../support/replicas';

const ROUNDS = 3;

/**
 * Three gateway processes on one PostgreSQL database and one SoftHSM2 token, as deployed: what one
 * replica does, the others see, and what they must make once, they make once. The tests run in
 * order on one deployment (the first starts it).
 */
describe('Replicas on one database and one token agree', function () {
  this.timeout(90000);
  let deployment: Deployment;
  let a: ChildGateway, b: ChildGateway, c: ChildGateway;
  before(async function () {
    skipWithoutPostgres(this);
    deployment = await freshDeployment();
  });
  after(async () => deployment?.close());

  it('three replicas started at the same moment on a fresh token and database make each internal key once, and all serve', async () => {
    // The race is between counting an id's objects and making one, milliseconds wide. The test
    // holds the store's migration lock until all three processes wait for it, so they leave it
    // together; a few fresh deployments, the last of which serves the tests below.
    for (let round = 1; round <= ROUNDS; round++) {
      if (round > 1) deployment = await freshDeployment();
      [a, b, c] = await startTogether(deployment, ['r1', 'r2', 'r3']);
      for (const ref of [MARKER_MAC_KEY, AUDIT_MAC_KEY]) assert.equal(deployment.objectsWithId(ref.id), 1, `round ${round}: one object carries the id of ${ref.label}`);
      for (const gw of [a, b, c]) await gw.client.send(new ListAliasesCommand({}));
      if (round < ROUNDS) await deployment.close();
    }
  });

  it('a DisableKey answered on one replica is refused on another within 1 s, though that one had the key cached (measured)', async () => {
    const keyId = (await a.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    await b.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('x') })); // now in b's key cache
    await a.client.send(new DisableKeyCommand({ KeyId: keyId }));
    const disabledAt = Date.now();
    let attempts = 0;
    for (;;) {
      attempts++;
      try {
        await b.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('x') }));
      } catch (err) {
        assert.ok(err instanceof DisabledException, String(err));
        break;
      }
      assert.ok(Date.now() - disabledAt < 1000, 'still served after 1 s');
    }
    const staleMs = Date.now() - disabledAt;
    // The announcement (LISTEN/NOTIFY) reaches b before a answers, so the first request after it is
    // normally refused; without it, b's cache entry expires within QKMS_KEY_CACHE_MS (500 ms).
    console.log(`      staleness: refused on the other replica after ${staleMs} ms, at attempt ${attempts}`);
    await assert.rejects(c.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('x') })), DisabledException);
  });

  it('CreateAlias of one name on two replicas at once: one alias, one AlreadyExistsException', async () => {
    const [k1, k2] = await Promise.all([a, b].map(async (gw) => (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!));
    for (let round = 0; round < 5; round++) {
      const name = `alias/race-${round}`;
      const results = await Promise.allSettled([a.client.send(new CreateAliasCommand({ AliasName: name, TargetKeyId: k1 })), b.client.send(new CreateAliasCommand({ AliasName: name, TargetKeyId: k2 }))]);
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, `round ${round}`);
      const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      assert.ok(refused.reason instanceof AlreadyExistsException, String(refused.reason));
      const aliases = (await c.client.send(new ListAliasesCommand({}))).Aliases!.filter((x) => x.AliasName === name);
      assert.equal(aliases.length, 1);
    }
  });

  it('a ListKeys marker minted on one replica pages on another, and a ciphertext made on one decrypts on the others', async () => {
    for (let i = 0; i < 3; i++) await c.client.send(new CreateKeyCommand({}));
    const all = (await a.client.send(new ListKeysCommand({ Limit: 1000 }))).Keys!.map((k) => k.KeyId);
    const first = await a.client.send(new ListKeysCommand({ Limit: 2 }));
    const second = await b.client.send(new ListKeysCommand({ Limit: 2, Marker: first.NextMarker }));
    const third = await c.client.send(new ListKeysCommand({ Limit: 1000, Marker: second.NextMarker }));
    assert.deepEqual([...first.Keys!, ...second.Keys!, ...third.Keys!].map((k) => k.KeyId), all);

    const keyId = all[all.length - 1]!;
    const { CiphertextBlob } = await a.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('made on r1') }));
    for (const gw of [b, c]) assert.equal(Buffer.from((await gw.client.send(new DecryptCommand({ CiphertextBlob }))).Plaintext!).toString(), 'made on r1');
  });
});

/** Starts the replicas, holding the store's migration lock until every one of them waits for it. */
async function startTogether(deployment: Deployment, ids: string[]): Promise<ChildGateway[]> {
  const gate = new Client({ connectionString: deployment.url });
  await gate.connect();
  try {
    await gate.query('BEGIN');
    await gate.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    const starting = deployment.start(ids);
    starting.catch(() => undefined); // awaited below, after the gate opens
    const deadline = Date.now() + 30000;
    const waiting = async () => Number((await gate.query<{ n: string }>("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).rows[0].n);
    while ((await waiting()) < ids.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await gate.query('COMMIT');
    return await starting;
  } finally {
    await gate.end();
  }
}
