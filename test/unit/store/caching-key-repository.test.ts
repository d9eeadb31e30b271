import assert from 'node:assert/strict';
import type { KeyRecord, KeyRepository } from '../../../src/domain/key-repository';
import { cachingKeyRepository } from '../../../src/store/caching-key-repository';

/** A store of one key whose reads are counted and can be held open. */
function countingStore() {
  const key: KeyRecord = { keyId: 'k1', createdAt: new Date(0), description: '', keyUsage: 'ENCRYPT_DECRYPT', keySpec: 'SYMMETRIC_DEFAULT', origin: 'AWS_KMS', state: 'Enabled', currentMaterialVersion: 1, policy: '{}' };
  const state = { key, reads: 0, hold: undefined as Promise<void> | undefined };
  const store = {
    async getKey(keyId: string) {
      state.reads++;
      const snapshot = keyId === 'k1' ? structuredClone(state.key) : undefined;
      await state.hold;
      return snapshot;
    },
    async setPolicy(_keyId: string, policy: string) {
      state.key = { ...state.key, policy };
    },
    async listKeys() {
      return [];
    },
  } as unknown as KeyRepository;
  return { state, store };
}

describe('cachingKeyRepository', () => {
  let clock = 0;
  const options = { maxAgeMs: 500, now: () => clock };
  beforeEach(() => (clock = 0));

  it('answers a key from memory for maxAgeMs, then reads the store again: another replica\'s change is seen within that bound', async () => {
    const { state, store } = countingStore();
    const cached = cachingKeyRepository(store, options);
    await cached.getKey('k1');
    clock = 499;
    await cached.getKey('k1');
    assert.equal(state.reads, 1);
    state.key = { ...state.key, state: 'Disabled' }; // written by another replica
    clock = 500;
    assert.equal((await cached.getKey('k1'))!.state, 'Disabled');
    assert.equal(state.reads, 2);
  });

  it('reads its own writes at once: any other method empties the cache', async () => {
    const { state, store } = countingStore();
    const cached = cachingKeyRepository(store, options);
    await cached.getKey('k1');
    await cached.setPolicy('k1', '{"new":true}');
    assert.equal((await cached.getKey('k1'))!.policy, '{"new":true}');
    assert.equal(state.reads, 2);
    await cached.listKeys(0, 10); // a plain read empties nothing
    await cached.getKey('k1');
    assert.equal(state.reads, 2);
  });

  it('does not keep a read that was in flight across a write', async () => {
    const { state, store } = countingStore();
    const cached = cachingKeyRepository(store, options);
    let release!: () => void;
    state.hold = new Promise((r) => (release = r));
    const inFlight = cached.getKey('k1'); // read the old policy, not answered yet
    await cached.setPolicy('k1', '{"new":true}');
    release();
    assert.equal((await inFlight)!.policy, '{}');
    state.hold = undefined;
    assert.equal((await cached.getKey('k1'))!.policy, '{"new":true}');
  });

  it('announces a write to the other replicas after it and before answering; their announcements empty this cache', async () => {
    const { state, store } = countingStore();
    const events: string[] = [];
    let listener!: () => void;
    const cached = cachingKeyRepository(store, {
      ...options,
      replicas: {
        announce: async () => void events.push(`announce after policy ${state.key.policy}`),
        onChange: (l) => (listener = l),
      },
    });
    await cached.setPolicy('k1', '{"a":1}');
    assert.deepEqual(events, ['announce after policy {"a":1}']);
    await cached.getKey('k1');
    listener(); // another replica changed something
    await cached.getKey('k1');
    assert.equal(state.reads, 2);
  });

  it('a write whose announcement fails still succeeds (the others see it within maxAgeMs)', async () => {
    const { store } = countingStore();
    const failures: string[] = [];
    const cached = cachingKeyRepository(store, { ...options, replicas: { announce: async () => Promise.reject(new Error('connection lost')), onChange: () => undefined }, onAnnounceError: (e) => failures.push(e.message) });
    await cached.setPolicy('k1', '{}');
    assert.deepEqual(failures, ['connection lost']);
  });

  it('hands out frozen records, keeps no absent key, and is the store itself at maxAgeMs 0', async () => {
    const { state, store } = countingStore();
    const cached = cachingKeyRepository(store, options);
    const first = (await cached.getKey('k1'))!;
    assert.throws(() => (first.state = 'Disabled'), TypeError);
    assert.equal((await cached.getKey('k1'))!.state, 'Enabled');
    await cached.getKey('nope');
    await cached.getKey('nope');
    assert.equal(state.reads, 3);
    assert.equal(cachingKeyRepository(store, { maxAgeMs: 0 }), store);
  });
});
