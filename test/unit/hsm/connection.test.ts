import assert from 'node:assert/strict';
import type * as pkcs11js from 'pkcs11js';
import { Connection } from '../../../src/hsm/pkcs11/connection';
import { ModuleLock, ModuleLockSlots } from '../../../src/hsm/pkcs11/module-lock';
import { ObjectIndex } from '../../../src/hsm/pkcs11/object-index';

/**
 * A PKCS#11 module as SoftHSM2 behaves with other processes on its token: an initialisation may
 * leave the token out of the slot list (`unlistedInits`), and sessions die with C_Finalize.
 */
function fakeModule() {
  const m = {
    initialized: false,
    generation: 0,
    unlistedInits: 0,
    openSessions: 0,
    /** CKA_IDs (hex) of the token objects this process sees, and of those made elsewhere since its last C_Initialize. */
    visible: new Set<string>(),
    madeElsewhere: new Set<string>(),
    searching: undefined as string | undefined,
    C_Initialize() {
      if (m.initialized) throw new Error('CKR_CRYPTOKI_ALREADY_INITIALIZED');
      m.initialized = true;
      m.generation++;
      for (const id of m.madeElsewhere) m.visible.add(id);
      m.madeElsewhere.clear();
    },
    C_FindObjectsInit(_s: Buffer, template: Array<{ type: number; value: unknown }>) {
      m.alive();
      m.searching = (template.find((a) => a.type === 0x102)?.value as Buffer).toString('hex');
    },
    C_FindObjects() {
      const id = m.searching;
      m.searching = undefined;
      return id !== undefined && m.visible.has(id) ? [Buffer.from(id, 'hex')] : [];
    },
    C_FindObjectsFinal() {},
    C_DestroyObject(_s: Buffer, h: Buffer) {
      m.visible.delete(h.toString('hex'));
    },
    C_Finalize() {
      if (!m.initialized) throw new Error('CKR_CRYPTOKI_NOT_INITIALIZED');
      m.initialized = false;
      m.openSessions = 0;
    },
    C_GetSlotList() {
      m.alive();
      if (m.unlistedInits > 0) {
        m.unlistedInits--;
        return [];
      }
      return [Buffer.from([1])];
    },
    C_GetTokenInfo() {
      m.alive();
      return { label: 'token', model: 'fake', manufacturerID: 'fake' };
    },
    C_OpenSession() {
      m.alive();
      m.openSessions++;
      return Buffer.from([m.generation]);
    },
    C_CloseSession(s: Buffer) {
      if (m.initialized && s[0] === m.generation) m.openSessions--;
    },
    logins: 0,
    isPinWrong: false,
    C_Login() {
      m.alive();
      m.logins++;
      if (m.isPinWrong) throw new Error('CKR_PIN_INCORRECT');
    },
    C_GenerateRandom(s: Buffer, buf: Buffer) {
      m.alive();
      if (s[0] !== m.generation) throw new Error('CKR_SESSION_HANDLE_INVALID');
      return buf;
    },
    close() {},
    alive() {
      if (!m.initialized) throw new Error('CKR_CRYPTOKI_NOT_INITIALIZED');
    },
  };
  return m;
}

describe('Connection (PKCS#11 module re-initialisation)', () => {
  it('a call made while a re-initialisation waits between its attempts waits for it, instead of using the finalised module and opening the circuit', async () => {
    const p11 = fakeModule();
    const states: string[] = [];
    const connection = new Connection(
      p11 as unknown as pkcs11js.PKCS11,
      { modulePath: 'fake', tokenLabel: 'token', pin: '1234', sessions: 2, staleIndexAfterOwnWrite: true, onStateChange: (isUp, detail) => states.push(`${isUp}: ${detail}`) },
      () => undefined,
    );
    await connection.connect();
    try {
      connection.tokenWritten();
      p11.unlistedInits = 1; // another process is writing the token at the next C_Initialize
      const refresh = connection.refreshTokenIndex(connection.moduleGeneration); // C_Finalize, a first attempt that misses the token, a pause
      const random = connection.withSession('C_GenerateRandom', (s) => p11.C_GenerateRandom(s as Buffer, Buffer.alloc(1)));
      assert.equal(await refresh, true);
      await random;
      assert.equal(connection.isUp, true, `circuit opened: ${states.join('; ')}`);
      assert.deepEqual(states, []);
    } finally {
      await connection.close();
    }
  });

  it('a re-initialisation asked for while one is under way joins it, leaving one set of sessions', async () => {
    const p11 = fakeModule();
    const connection = new Connection(p11 as unknown as pkcs11js.PKCS11, { modulePath: 'fake', tokenLabel: 'token', pin: '1234', sessions: 2, staleIndexAfterOwnWrite: true }, () => undefined);
    await connection.connect();
    try {
      connection.tokenWritten();
      p11.unlistedInits = 1;
      const first = connection.refreshTokenIndex(connection.moduleGeneration);
      connection.tokenWritten(); // a write of another call meanwhile, whose search then found nothing
      const second = connection.refreshTokenIndex(connection.moduleGeneration);
      await Promise.all([first, second]);
      assert.equal(connection.isUp, true);
      assert.equal(p11.openSessions, 2, 'sessions of a connect that another one replaced are left open in the module');
      await connection.withSession('C_GenerateRandom', (s) => p11.C_GenerateRandom(s as Buffer, Buffer.alloc(1)));
    } finally {
      await connection.close();
    }
  });

  it('a deletion never takes an object it cannot see for gone while its index cannot be re-read (a key pair being generated): it fails, to be retried', async () => {
    const p11 = fakeModule();
    const connection = new Connection(p11 as unknown as pkcs11js.PKCS11, { modulePath: 'fake', tokenLabel: 'token', pin: '1234', sessions: 2, staleIndexAfterOwnWrite: true }, () => undefined);
    const objects = new ObjectIndex(p11 as unknown as pkcs11js.PKCS11, connection);
    await connection.connect();
    try {
      const ref = { id: 'ab'.repeat(16), label: 'qkms/k/1/kek' };
      connection.tokenWritten(); // this process wrote the token since it read its index
      p11.madeElsewhere.add(ref.id); // another replica made the key's object meanwhile
      let finish!: () => void;
      const generation = connection.offThread(() => new Promise<void>((r) => (finish = r))); // an RSA key pair on the libuv pool
      const outcome = await objects.destroy(ref).catch((err: Error) => err);
      assert.notEqual(outcome, 0, 'answered "destroyed nothing" with the object still on the token: the key would be deleted and its material left');
      finish();
      await generation;
      assert.equal(await objects.destroy(ref), 1, 'the retry destroys it');
      assert.equal(p11.visible.has(ref.id), false);
    } finally {
      await connection.close();
    }
  });

  it('a thread whose reconnect after another thread re-initialised the module failed connects again at its next call, never using the old sessions or object handles', async () => {
    const p11 = fakeModule();
    const slots = new ModuleLockSlots();
    const connects = { a: 0 };
    const options = { modulePath: 'fake', tokenLabel: 'token', pin: '1234', sessions: 2, staleIndexAfterOwnWrite: true };
    const a = new Connection(p11 as unknown as pkcs11js.PKCS11, { ...options, moduleLock: slots.take() }, () => connects.a++);
    const b = new Connection(p11 as unknown as pkcs11js.PKCS11, { ...options, moduleLock: slots.take() }, () => undefined);
    await a.connect();
    await b.connect();
    try {
      b.tokenWritten();
      assert.equal(await b.refreshTokenIndex(b.moduleGeneration), true); // C_Finalize, C_Initialize: a's sessions died
      p11.unlistedInits = 1; // a's reconnect meets the token being written by another process
      const random = (c: Connection) => c.withSession('C_GenerateRandom', (s) => (p11.C_GenerateRandom(s as Buffer, Buffer.alloc(1)), (s as Buffer)[0]));
      await assert.rejects(random(a));
      assert.equal(await random(a), p11.generation, 'a used a session of the old initialisation');
      assert.equal(connects.a, 2, 'the object handles of the old initialisation were kept');
    } finally {
      b.setMayFinalize(false); // the last one out finalises, as HsmThreads.close does
      await b.close();
      await a.close();
    }
  });

  it('a token write counted while another thread waits to re-initialise the module is not lost to that re-initialisation', async () => {
    const p11 = fakeModule();
    const slots = new ModuleLockSlots();
    const a = new Connection(p11 as unknown as pkcs11js.PKCS11, { modulePath: 'fake', tokenLabel: 'token', pin: '1234', sessions: 1, moduleLock: slots.take() }, () => undefined);
    await a.connect();
    const [writer, other] = [new ModuleLock(slots.take()), new ModuleLock(slots.take())];
    try {
      assert.equal(other.enter(), undefined); // a thread inside a long call (a key pair being generated)
      const reinit = writer.exclusive(() => undefined, 1000); // waits for it to leave
      await new Promise((r) => setTimeout(r, 10));
      const created = a.creating('C_GenerateKey', () => 'made'); // must wait for the re-initialisation
      await new Promise((r) => setTimeout(r, 10));
      other.leave();
      assert.equal(await reinit, 'done');
      assert.equal(await created, 'made');
      assert.equal(writer.tokenWrites, 1, 'the write was counted before the re-initialisation reset the count, and lost');
    } finally {
      await a.close();
    }
  });

  it('offers the PIN once more after the token refused it, never again: each wrong attempt counts towards the partition\'s lockout', async () => {
    const p11 = fakeModule();
    const connection = new Connection(p11 as unknown as pkcs11js.PKCS11, { modulePath: 'fake', tokenLabel: 'token', pin: '1234', sessions: 1 }, () => undefined);
    await connection.connect();
    try {
      p11.isPinWrong = true; // the PIN was changed on the HSM, and the token logged this process out
      const loggedOut = () => connection.withSession('C_Encrypt', () => {
        throw new Error('CKR_USER_NOT_LOGGED_IN');
      });
      for (let i = 0; i < 3; i++) await assert.rejects(loggedOut(), (err: Error) => /CKR_PIN_INCORRECT/.test(err.message));
      assert.equal(p11.logins, 2, 'the connect, then one refused re-login; none after it');
    } finally {
      await connection.close();
    }
  });
});

describe('ModuleLock', () => {
  it('a thread that died holding the module exclusively lets go of it when its slot is freed', async () => {
    const slots = new ModuleLockSlots();
    const dying = slots.take();
    const other = new ModuleLock(slots.take());
    const before = other.generation;
    void new ModuleLock(dying).exclusive(() => new Promise<void>(() => undefined), 200); // terminated inside
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(other.generation, before + 1, 'its re-initialisation began: the others must reconnect');
    const entering = other.enter();
    assert.notEqual(entering, undefined, 'entered while another thread held the module');
    slots.free(dying);
    assert.equal(await Promise.race([entering!.then(() => 'entered'), new Promise((r) => setTimeout(() => r('waiting'), 100))]), 'entered');
    other.leave();
    // The next re-initialisation is a new generation too (the dead one's section counted as ended).
    let during = 0;
    assert.equal(await other.exclusive(() => void (during = other.generation), 50), 'done');
    assert.equal(during, before + 2, 'sessions opened in the next re-initialisation would pass for the dead one\'s');
    assert.equal(other.generation, before + 2);
  });

  it('re-initialises only with every other thread out, and says "busy" when one stays past the wait, "other" when another did it meanwhile', async () => {
    const slots = new ModuleLockSlots();
    const [a, b, c] = [new ModuleLock(slots.take()), new ModuleLock(slots.take()), new ModuleLock(slots.take())];
    assert.equal(c.enter(), undefined);
    assert.equal(await a.exclusive(() => assert.fail('ran with a thread inside'), 30), 'busy');
    c.leave();
    let release!: () => void;
    const first = a.exclusive(() => new Promise<void>((r) => (release = r)), 30);
    await new Promise((r) => setTimeout(r, 5));
    const second = b.exclusive(() => assert.fail('ran twice'), 30);
    release();
    assert.deepEqual(await Promise.all([first, second]), ['done', 'other']);
    assert.equal(a.generation, 1);
  });
});
