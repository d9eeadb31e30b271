import assert from 'node:assert/strict';
import { Client } from 'pg';
import crypto from 'node:crypto';
import { CreateKeyCommand, ScheduleKeyDeletionCommand } from '@aws-sdk/client-kms';
import { newObjectIds } from '../../src/domain/key-repository';
import { reconcileWithToken } from '../../src/domain/token-reconciliation';
import { createLogger } from '../../src/logging/logger';
import { PostgresCoordination } from '../../src/store/postgres-coordination';
import { PostgresKeyRepository } from '../../src/store/postgres-key-repository';
import type { ChildGateway } from '../support/child-gateway';
import { integration } from '../support/integration-hooks';
import { sharedPostgres, skipWithoutPostgres } from '../support/postgres';
import { freshDeployment, type Deployment } from '../support/replicas';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What replicas hold while they live, and give up when they die: their intents' owner lease and the scheduler's. */
describe('Replica leases on PostgreSQL', function () {
  this.timeout(90000);
  before(function () {
    skipWithoutPostgres(this);
  });

  it('start-up repair leaves the intents of a live replica alone (not rolled back, not orphans) and rolls back those of one that is gone', async () => {
    const url = await (await sharedPostgres()).createDatabase('owners');
    const { hsm } = integration();
    const logger = createLogger({ level: 'error' });
    const live = await PostgresCoordination.open(url, () => undefined);
    const starting = await PostgresCoordination.open(url, () => undefined);
    const liveKeys = await PostgresKeyRepository.open(url, { ownerId: live.ownerId });
    const startingKeys = await PostgresKeyRepository.open(url, { ownerId: starting.ownerId });
    try {
      // The live replica is in the middle of a CreateKey: intent recorded, its KEK made, its MAC key not yet.
      const intent = await liveKeys.recordKeyIntent({ keyId: crypto.randomUUID(), objectIds: newObjectIds('SYMMETRIC_DEFAULT'), createdAt: new Date() });
      await hsm.generateKek(intent.objects.kek);
      const first = await reconcileWithToken({ keys: startingKeys, hsm, logger, owners: starting });
      assert.equal(first.inFlight, 1);
      assert.equal(await hsm.countObjects(intent.objects.kek), 1, 'its object is still there');
      assert.deepEqual(first.orphaned.filter((o) => o.id === intent.objects.kek.id), [], 'and not reported as an orphan');
      assert.equal((await startingKeys.listIntents()).length, 1);

      await live.close(); // the process is gone: its lease with it
      const second = await reconcileWithToken({ keys: startingKeys, hsm, logger, owners: starting });
      assert.equal(second.rolledBack, 1);
      assert.equal(await hsm.countObjects(intent.objects.kek), 0);
      assert.deepEqual(await startingKeys.listIntents(), []);
    } finally {
      await live.close();
      await starting.close();
      await liveKeys.close();
      await startingKeys.close();
    }
  });

  it('a coordination connection the server dropped is reconnected once for callers that find it gone together, announcements and the scheduler lease alike', async () => {
    const url = await (await sharedPostgres()).createDatabase('reconnect');
    const lost: string[] = [];
    const coordination = await PostgresCoordination.open(url, (err) => lost.push(err.message));
    const admin = new Client({ connectionString: url });
    await admin.connect();
    try {
      let changes = 0;
      coordination.onKeyChange(() => changes++);
      assert.equal(await coordination.holdsSchedulerLease(), true);
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'qkms-coordination'");
      for (let i = 0; i < 50 && lost.length === 0; i++) await sleep(20); // the client sees the connection end
      const seenBefore = changes;
      // Both find the connection gone and reconnect: one connection, which takes the owner lease once.
      const [lease] = await Promise.all([coordination.holdsSchedulerLease(), coordination.announceKeyChange()]);
      assert.equal(lease, true);
      assert.ok(changes > seenBefore, 'a reconnect tells the cache that announcements may have been missed');
      const { rows } = await admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'qkms-coordination'");
      assert.equal(rows[0].n, 1);
    } finally {
      await coordination.close();
      await admin.end();
    }
  });

  describe('the scheduler', () => {
    let deployment: Deployment;
    before(async function () {
      skipWithoutPostgres(this);
      deployment = await freshDeployment({ QKMS_SCHEDULER_INTERVAL_MS: '1000', QKMS_SCHEDULER_TAKEOVER_MS: '1000' });
    });
    after(async () => deployment?.close());

    /** Keys made due for deletion now (their 7-day window moved into the past in the database). */
    async function dueKeys(gw: ChildGateway, n: number): Promise<string[]> {
      const keyIds: string[] = [];
      for (let i = 0; i < n; i++) {
        const keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
        await gw.client.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 }));
        keyIds.push(keyId);
      }
      await deployment.query("UPDATE keys SET deletion_date = now() - interval '1 second' WHERE key_id = ANY($1)", [keyIds]);
      return keyIds;
    }

    async function waitUntilDeleted(keyIds: string[], withinMs: number): Promise<void> {
      const deadline = Date.now() + withinMs;
      while ((await deployment.query('SELECT 1 FROM keys WHERE key_id = ANY($1)', [keyIds])).length > 0) {
        assert.ok(Date.now() < deadline, `not deleted within ${withinMs} ms`);
        await sleep(100);
      }
    }

    const deleteRecords = (keyIds: string[]) =>
      deployment.query<{ replica_id: string; key_arn: string }>("SELECT replica_id, key_arn FROM audit_records WHERE operation = 'DeleteKey' AND split_part(key_arn, '/', 2) = ANY($1)", [keyIds]);

    it('runs on one replica: each due deletion happens once (one DeleteKey record across the chains)', async () => {
      const [r1] = await deployment.start(['r1', 'r2']);
      const keyIds = await dueKeys(r1, 8);
      await waitUntilDeleted(keyIds, 15000);
      await sleep(2500); // a second scheduler would have run (and recorded) by now
      const records = await deleteRecords(keyIds);
      assert.deepEqual(records.map((r) => r.key_arn.split('/')[1]).sort(), [...keyIds].sort(), 'one DeleteKey record per key');
      const holders = [...deployment.replicas].filter(([, gw]) => /scheduler lease taken/.test(gw.output()));
      assert.equal(holders.length, 1);
      assert.deepEqual([...new Set(records.map((r) => r.replica_id))], [holders[0][0]]);
    });

    it('when the holder is killed (-9), another replica takes the lease and runs the next due work within seconds', async () => {
      const [[holderId, holder]] = [...deployment.replicas].filter(([, gw]) => /scheduler lease taken/.test(gw.output()));
      const [[survivorId, survivor]] = [...deployment.replicas].filter(([id]) => id !== holderId);
      const keyIds = await dueKeys(survivor, 1);
      await holder.stop('SIGKILL');
      const killedAt = Date.now();
      await waitUntilDeleted(keyIds, 10000);
      console.log(`      taken over and deleted ${Date.now() - killedAt} ms after the kill`);
      assert.match(survivor.output(), /scheduler lease taken/);
      assert.deepEqual((await deleteRecords(keyIds)).map((r) => r.replica_id), [survivorId]);
    });
  });
});
