import * as pkcs11js from 'pkcs11js';
import { CallRecorder } from '../call-stats';
import type { DataKeyWrap, Hash, HmacKeySpec, Hsm, HsmHealth, HsmStats, KeyObjectFacts, KeyPairSpec, KeyPairUsage, ObjectRef, SigningScheme, WrappedDataKey } from '../hsm';
import { GCM_IV_BYTES, GCM_TAG_BYTES } from '../hsm';
import { HsmError } from '../hsm-error';
import type { IntegrityErrors } from '../profiles';
import { ckrName, classifyCkr } from './ckr-table';
import crypto from 'node:crypto';
import { ecdsaDerToRaw, ecdsaRawToDer, edwardsPoint, unwrapEcPoint } from './der';
import { AES_KEY_GEN, aesGcm, CKK_EC_EDWARDS, DIGEST_INFO_PREFIX, ECDSA, EDDSA, GENERIC_SECRET_KEY_GEN, HMAC_BY_HASH, KWP, RSA_PKCS, rsaOaep, rsaPss } from './mechanisms';
import { CURVE_OIDS, ephemeralDataKeyTemplate, ephemeralKeyPairTemplates, kekTemplate, keyPairGenMechanism, keyPairTemplates, macKeyTemplate } from './templates';
import { FaultPlan } from './faults';
import { findAll, readObjectFacts } from './object-facts';
import { SessionPool } from './session-pool';

export interface Pkcs11Options {
  modulePath: string;
  tokenLabel: string;
  pin: string;
  sessions: number;
  /** QKMS_FAULTS_FILE: scripted PKCS#11 failures for tests and drills (faults.ts). */
  faultsFile?: string;
  /** Who makes AES-GCM IVs (profiles.ts); default 'caller'. */
  gcmIv?: 'caller' | 'hsm';
  /** The profile's CKR codes that mean "the input does not verify", by function (profiles.ts). */
  integrityErrors?: IntegrityErrors;
  /**
   * After this many session objects (ephemeral data keys), finalise and re-initialise the module
   * between two calls: SoftHSM2 keeps every session object it ever made until C_Finalize
   * (profiles.ts). Unset: never.
   */
  recycleAfterSessionObjects?: number;
  /** Told of a recycle (count of objects released, pause in ms). */
  onRecycle?: (objects: number, ms: number) => void;
  /**
   * False while another thread may be inside the module (a stuck HSM thread that was abandoned;
   * another user of the module in this process): then nothing here calls C_Finalize or unloads the
   * module. Recovery reopens sessions and logs in again instead, a due recycle waits, and close()
   * only closes this instance's sessions. Changed later with setMayFinalize. Default true.
   */
  mayFinalize?: boolean;
  /** Told when the token goes down (circuit open) and comes back. */
  onStateChange?: (isUp: boolean, detail: string) => void;
}

const RECOVERY_INTERVAL_MS = 1000;
/** How long close() waits for key-pair generations in flight (the HSM thread gives close 2 s in all). */
const CLOSE_WAIT_MS = 1500;
/** PKCS#11 v2.40 §5.6 session state of a read/write session logged in as the normal user (pkcs11js exports no CKS_*). */
const CKS_RW_USER_FUNCTIONS = 3;

type Session = pkcs11js.Handle;

/**
 * Hsm over pkcs11js. Calls are synchronous: on SoftHSM2 a symmetric call takes tens of µs and the
 * thread-pool hop of the *Async variants costs more, and async GenerateKey/Wrap/Unwrap leak
 * ~250 B per call (pkcs11-and-clients.md §0, §1.5). The performance issue revisits this per profile.
 */
export class Pkcs11Hsm implements Hsm {
  /** CKA_ID (hex) -> handle, filled lazily by lookups and generations; emptied on every (re)connect. */
  private readonly handles = new Map<string, pkcs11js.Handle>();
  private slot!: pkcs11js.Handle;
  private pool!: SessionPool<Session>;
  /** Circuit breaker: while open, calls fail fast and a timer tries to reconnect. */
  private recovery?: NodeJS.Timeout;
  /** Session objects created since the module was (re-)initialised. */
  private sessionObjects = 0;
  /** Calls running on the libuv pool (key-pair generation). */
  private asyncInFlight = 0;
  private mayFinalize: boolean;

  private constructor(
    private readonly p11: pkcs11js.PKCS11,
    private readonly calls: CallRecorder,
    private readonly options: Pkcs11Options,
  ) {
    this.mayFinalize = options.mayFinalize ?? true;
  }

  /** Load the module once, then connect; a wrong PIN or label fails here, at boot. */
  static async open(options: Pkcs11Options): Promise<Pkcs11Hsm> {
    const calls = new CallRecorder();
    const p11 = instrumented(new pkcs11js.PKCS11(), calls, { faults: options.faultsFile ? new FaultPlan(options.faultsFile) : undefined, integrityErrors: options.integrityErrors });
    call('C_Load', () => p11.load(options.modulePath));
    const hsm = new Pkcs11Hsm(p11, calls, options);
    await hsm.connect();
    return hsm;
  }

  /** Initialise with OS locking, find the token by label, open the sessions, log in once. Objects are looked up when first used. */
  private async connect(): Promise<void> {
    this.sessionObjects = 0;
    initialize(this.p11);
    const slot = findSlotByLabel(this.p11, this.options.tokenLabel);
    const openSession = () => call('C_OpenSession', () => this.p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION));
    const sessions: Session[] = [];
    try {
      while (sessions.length < this.options.sessions) sessions.push(openSession());
      login(this.p11, sessions[0], this.options.pin);
    } catch (err) {
      this.closeSessions(sessions); // a reconnect without C_Finalize would leave them open in the module
      throw err;
    }
    this.slot = slot;
    this.pool = new SessionPool<Session>(sessions, (broken) => {
      try {
        this.p11.C_CloseSession(broken);
      } catch {
        // already gone
      }
      return openSession();
    });
    this.handles.clear();
  }

  get isUp(): boolean {
    return this.recovery === undefined;
  }

  /** Whether C_Finalize is allowed now (mayFinalize in Pkcs11Options); the HSM thread's owner tells it. */
  setMayFinalize(allowed: boolean): void {
    this.mayFinalize = allowed;
  }

  /** How many times each C_* function was called since open (the benchmark reports calls per operation). */
  callCounts(): Record<string, number> {
    return this.calls.counts();
  }

  stats(): HsmStats {
    return { isUp: this.isUp, sessions: this.pool.stats, queuedCalls: 0, pkcs11: this.calls.snapshot() };
  }

  async generateKek(ref: ObjectRef): Promise<void> {
    await this.creating('C_GenerateKey', (s) => this.remember(ref, this.p11.C_GenerateKey(s, AES_KEY_GEN, kekTemplate(ref))));
  }

  async generateMacKey(ref: ObjectRef, spec: HmacKeySpec = { hash: 'SHA256', bytes: 32 }): Promise<void> {
    const template = macKeyTemplate(ref, spec.bytes, hmacMechanism(spec.hash).mechanism);
    await this.creating('C_GenerateKey', (s) => this.remember(ref, this.p11.C_GenerateKey(s, GENERIC_SECRET_KEY_GEN, template)));
  }

  async deriveSharedSecret(privateKey: ObjectRef, peerPoint: Buffer): Promise<Buffer> {
    const fieldBytes = (peerPoint.length - 1) / 2;
    return this.withKey(privateKey, 'C_DeriveKey', (s, key) => {
      const mechanism = { mechanism: pkcs11js.CKM_ECDH1_DERIVE, parameter: { type: pkcs11js.CK_PARAMS_EC_DH, kdf: pkcs11js.CKD_NULL, publicData: peerPoint } as pkcs11js.ECDH1 };
      const secret = this.sessionObjectCreated(this.p11.C_DeriveKey(s, mechanism, key, ephemeralDataKeyTemplate(fieldBytes)));
      try {
        return Buffer.from(this.p11.C_GetAttributeValue(s, secret, [{ type: pkcs11js.CKA_VALUE }])[0].value);
      } finally {
        this.p11.C_DestroyObject(s, secret);
      }
    });
  }

  async generateKeyPair(refs: { private: ObjectRef; public: ObjectRef }, spec: KeyPairSpec, usage: KeyPairUsage): Promise<void> {
    const { publicKey, privateKey } = keyPairTemplates(refs, spec, usage);
    await this.creating('C_GenerateKeyPair', async (s) => {
      const pair = await this.generatePairOffThread(s, spec, publicKey, privateKey);
      this.remember(refs.public, pair.publicKey);
      this.remember(refs.private, pair.privateKey);
    });
  }

  /**
   * C_GenerateKeyPair on the libuv pool (pkcs11js's async form): RSA generation takes 0.3 s to
   * several seconds on SoftHSM2, and other calls go on meanwhile on other sessions. The async form
   * leaks ~250 B per call (pkcs11-and-clients.md §1.5), nothing at key-generation rates.
   */
  private async generatePairOffThread(s: Session, spec: KeyPairSpec, publicKey: pkcs11js.Template, privateKey: pkcs11js.Template): Promise<pkcs11js.KeyPair> {
    const async = this.p11 as unknown as { C_GenerateKeyPairAsync(...args: unknown[]): Promise<pkcs11js.KeyPair> };
    this.asyncInFlight++;
    try {
      return await async.C_GenerateKeyPairAsync(s, keyPairGenMechanism(spec), publicKey, privateKey);
    } finally {
      this.asyncInFlight--;
    }
  }

  async publicKey(ref: ObjectRef): Promise<Buffer> {
    const jwk = await this.withKey(ref, 'C_GetAttributeValue', (s, key): crypto.JsonWebKey => {
      const [type] = this.p11.C_GetAttributeValue(s, key, [{ type: pkcs11js.CKA_KEY_TYPE }]);
      if (ulong(type.value) === pkcs11js.CKK_RSA) {
        const [n, e] = this.p11.C_GetAttributeValue(s, key, [{ type: pkcs11js.CKA_MODULUS }, { type: pkcs11js.CKA_PUBLIC_EXPONENT }]);
        return { kty: 'RSA', n: n.value.toString('base64url'), e: e.value.toString('base64url') };
      }
      if (ulong(type.value) === CKK_EC_EDWARDS) {
        const [point] = this.p11.C_GetAttributeValue(s, key, [{ type: pkcs11js.CKA_EC_POINT }]);
        return { kty: 'OKP', crv: 'Ed25519', x: edwardsPoint(point.value).toString('base64url') };
      }
      const [params, point] = this.p11.C_GetAttributeValue(s, key, [{ type: pkcs11js.CKA_EC_PARAMS }, { type: pkcs11js.CKA_EC_POINT }]);
      const crv = Object.entries(CURVE_OIDS).find(([, oid]) => oid.equals(params.value))?.[0];
      if (!crv) throw new HsmError('config', 'C_GetAttributeValue', undefined, { cause: new Error('unknown EC curve') });
      const xy = unwrapEcPoint(point.value).subarray(1);
      return { kty: 'EC', crv, x: xy.subarray(0, xy.length / 2).toString('base64url'), y: xy.subarray(xy.length / 2).toString('base64url') };
    });
    drainOpenSslErrors();
    return crypto.createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'der' });
  }

  async signDigest(ref: ObjectRef, scheme: SigningScheme, digest: Buffer): Promise<Buffer> {
    return this.withKey(ref, 'C_Sign', (s, key) => {
      const { mechanism, input } = signatureMechanism(scheme, digest);
      this.p11.C_SignInit(s, mechanism, key);
      const raw = Buffer.from(this.p11.C_Sign(s, input, Buffer.alloc(1024)));
      return scheme.scheme === 'ECDSA' ? ecdsaRawToDer(raw) : raw; // RSA and Ed25519 signatures are raw
    });
  }

  async verifyDigest(ref: ObjectRef, scheme: SigningScheme, digest: Buffer, signature: Buffer): Promise<boolean> {
    // KMS pairs each ECDSA hash with one field size: SHA-256 P-256/secp256k1, SHA-384 P-384, SHA-512 P-521.
    const raw = scheme.scheme === 'ECDSA' ? ecdsaDerToRaw(signature, ECDSA_FIELD_BYTES[scheme.hash]) : signature;
    if (!raw) return false;
    try {
      return await this.withKey(ref, 'C_Verify', (s, key) => {
        const { mechanism, input } = signatureMechanism(scheme, digest);
        this.p11.C_VerifyInit(s, mechanism, key);
        return this.p11.C_Verify(s, input, raw);
      });
    } catch (err) {
      // A wrong-length or garbled signature is an invalid signature, not a device problem.
      if (err instanceof HsmError && (err.kind === 'integrity' || err.ckr === 'CKR_SIGNATURE_LEN_RANGE')) return false;
      throw err;
    }
  }

  async generateWrappedDataKey(kekRef: ObjectRef, lengthBytes: number, wrap: DataKeyWrap): Promise<WrappedDataKey> {
    return this.withKey(kekRef, 'C_WrapKey', (s, kek) => {
      const dataKey = this.sessionObjectCreated(this.p11.C_GenerateKey(s, GENERIC_SECRET_KEY_GEN, ephemeralDataKeyTemplate(lengthBytes)));
      try {
        const plaintext = Buffer.from(this.p11.C_GetAttributeValue(s, dataKey, [{ type: pkcs11js.CKA_VALUE }])[0].value);
        const out = Buffer.alloc(lengthBytes + 16 + GCM_TAG_BYTES);
        if (wrap.mechanism === 'AES_KWP') return { plaintext, wrapped: Buffer.from(this.p11.C_WrapKey(s, KWP, kek, dataKey, out)) };
        const gcm = this.freshGcm(s, wrap.aad, 'C_WrapKey');
        const wrapped = Buffer.from(this.p11.C_WrapKey(s, gcm.mechanism, kek, dataKey, out));
        return { plaintext, wrapped, iv: gcm.usedIv() };
      } finally {
        this.p11.C_DestroyObject(s, dataKey);
      }
    });
  }

  async unwrapDataKey(kekRef: ObjectRef, wrapped: Buffer): Promise<Buffer> {
    return this.withKey(kekRef, 'C_UnwrapKey', (s, kek) => {
      const dataKey = this.sessionObjectCreated(this.p11.C_UnwrapKey(s, KWP, kek, wrapped, ephemeralDataKeyTemplate()));
      try {
        return Buffer.from(this.p11.C_GetAttributeValue(s, dataKey, [{ type: pkcs11js.CKA_VALUE }])[0].value);
      } finally {
        this.p11.C_DestroyObject(s, dataKey);
      }
    });
  }

  async encryptAesGcm(kekRef: ObjectRef, plaintext: Buffer, aad: Buffer): Promise<{ iv: Buffer; ciphertextAndTag: Buffer }> {
    return this.withKey(kekRef, 'C_Encrypt', (s, kek) => {
      const gcm = this.freshGcm(s, aad, 'C_Encrypt');
      this.p11.C_EncryptInit(s, gcm.mechanism, kek);
      const ciphertextAndTag = Buffer.from(this.p11.C_Encrypt(s, plaintext, Buffer.alloc(plaintext.length + GCM_TAG_BYTES)));
      return { iv: gcm.usedIv(), ciphertextAndTag };
    });
  }

  /**
   * A GCM mechanism with a fresh IV, made as the profile says: 12 bytes of C_GenerateRandom in this
   * session, or (gcmIv 'hsm') a zero-filled IV that the token overwrites with the one it chose —
   * pkcs11js hands the token a pointer to this Buffer. usedIv() refuses the output if the IV is
   * still zero: a token that does not generate IVs would otherwise encrypt everything under one IV.
   */
  private freshGcm(s: Session, aad: Buffer, fn: string): { mechanism: pkcs11js.Mechanism; usedIv(): Buffer } {
    const fromToken = this.options.gcmIv === 'hsm';
    const iv = fromToken ? Buffer.alloc(GCM_IV_BYTES) : Buffer.from(this.p11.C_GenerateRandom(s, Buffer.alloc(GCM_IV_BYTES)));
    return {
      mechanism: aesGcm(iv, aad),
      usedIv: () => {
        if (fromToken && iv.every((b) => b === 0)) {
          throw new HsmError('config', fn, undefined, { cause: new Error('QKMS_HSM_PROFILE says the token generates GCM IVs, but it left the zero IV in place; output discarded') });
        }
        return Buffer.from(iv);
      },
    };
  }

  async decryptAesGcm(kekRef: ObjectRef, ciphertextAndTag: Buffer, iv: Buffer, aad: Buffer): Promise<Buffer> {
    return this.withKey(kekRef, 'C_Decrypt', (s, kek) => {
      this.p11.C_DecryptInit(s, aesGcm(iv, aad), kek);
      // SoftHSM2 wants room for ciphertext plus tag even though the tag is not output (§1.3).
      return Buffer.from(this.p11.C_Decrypt(s, ciphertextAndTag, Buffer.alloc(ciphertextAndTag.length)));
    });
  }

  async generateDataKeyPair(spec: KeyPairSpec): Promise<{ privateKey: Buffer; publicKey: Buffer }> {
    const { publicKey, privateKey } = ephemeralKeyPairTemplates(spec);
    const jwk = await this.withSession('C_GenerateKeyPair', async (s): Promise<crypto.JsonWebKey> => {
      const pair = await this.generatePairOffThread(s, spec, publicKey, privateKey);
      this.sessionObjectCreated(pair.publicKey);
      this.sessionObjectCreated(pair.privateKey);
      try {
        const read = (h: pkcs11js.Handle, ...types: number[]) => this.p11.C_GetAttributeValue(s, h, types.map((type) => ({ type }))).map((a) => a.value);
        if (spec.family === 'EDWARDS') {
          const [point] = read(pair.publicKey, pkcs11js.CKA_EC_POINT);
          const [d] = read(pair.privateKey, pkcs11js.CKA_VALUE);
          return { kty: 'OKP', crv: 'Ed25519', x: edwardsPoint(point).toString('base64url'), d: d.toString('base64url') };
        }
        if (spec.family === 'RSA') {
          const [n, e, d, p, q, dp, dq, qi] = read(pair.privateKey, pkcs11js.CKA_MODULUS, pkcs11js.CKA_PUBLIC_EXPONENT, pkcs11js.CKA_PRIVATE_EXPONENT, pkcs11js.CKA_PRIME_1, pkcs11js.CKA_PRIME_2, pkcs11js.CKA_EXPONENT_1, pkcs11js.CKA_EXPONENT_2, pkcs11js.CKA_COEFFICIENT);
          return Object.fromEntries(Object.entries({ n, e, d, p, q, dp, dq, qi }).map(([k, v]) => [k, v.toString('base64url')]).concat([['kty', 'RSA']]));
        }
        const [point] = read(pair.publicKey, pkcs11js.CKA_EC_POINT);
        const [d] = read(pair.privateKey, pkcs11js.CKA_VALUE);
        const xy = unwrapEcPoint(point).subarray(1);
        const field = xy.length / 2;
        const padded = Buffer.concat([Buffer.alloc(Math.max(0, field - d.length)), d]);
        return { kty: 'EC', crv: spec.curve, x: xy.subarray(0, field).toString('base64url'), y: xy.subarray(field).toString('base64url'), d: padded.toString('base64url') };
      } finally {
        this.p11.C_DestroyObject(s, pair.privateKey);
        this.p11.C_DestroyObject(s, pair.publicKey);
      }
    });
    drainOpenSslErrors();
    const key = crypto.createPrivateKey({ key: jwk, format: 'jwk' });
    return { privateKey: key.export({ type: 'pkcs8', format: 'der' }), publicKey: crypto.createPublicKey(key).export({ type: 'spki', format: 'der' }) };
  }

  async rsaEncrypt(ref: ObjectRef, hash: 'SHA1' | 'SHA256', plaintext: Buffer): Promise<Buffer> {
    return this.withKey(ref, 'C_Encrypt', (s, key) => {
      this.p11.C_EncryptInit(s, rsaOaep(hash), key);
      return Buffer.from(this.p11.C_Encrypt(s, plaintext, Buffer.alloc(1024)));
    });
  }

  async rsaDecrypt(ref: ObjectRef, hash: 'SHA1' | 'SHA256', ciphertext: Buffer): Promise<Buffer> {
    return this.withKey(ref, 'C_Decrypt', (s, key) => {
      this.p11.C_DecryptInit(s, rsaOaep(hash), key);
      return Buffer.from(this.p11.C_Decrypt(s, ciphertext, Buffer.alloc(1024)));
    });
  }

  async hmacSign(macRef: ObjectRef, data: Buffer, hash: Hash = 'SHA256'): Promise<Buffer> {
    const hmac = hmacMechanism(hash);
    return this.withKey(macRef, 'C_Sign', (s, key) => {
      this.p11.C_SignInit(s, { mechanism: hmac.mechanism }, key);
      return Buffer.from(this.p11.C_Sign(s, data, Buffer.alloc(hmac.bytes)));
    });
  }

  async hmacVerify(macRef: ObjectRef, data: Buffer, mac: Buffer, hash: Hash = 'SHA256'): Promise<boolean> {
    const hmac = hmacMechanism(hash);
    if (mac.length !== hmac.bytes) return false;
    try {
      return await this.withKey(macRef, 'C_Verify', (s, key) => {
        this.p11.C_VerifyInit(s, { mechanism: hmac.mechanism }, key);
        return this.p11.C_Verify(s, data, mac);
      });
    } catch (err) {
      if (err instanceof HsmError && err.kind === 'integrity') return false;
      throw err;
    }
  }

  async randomBytes(length: number): Promise<Buffer> {
    return this.withSession('C_GenerateRandom', (s) => Buffer.from(this.p11.C_GenerateRandom(s, Buffer.alloc(length))));
  }

  async destroyKey(ref: ObjectRef): Promise<number> {
    return this.withSession('C_DestroyObject', (s) => {
      this.handles.delete(ref.id);
      const found = findAll(this.p11, s, idTemplate(ref));
      for (const handle of found) this.p11.C_DestroyObject(s, handle);
      return found.length;
    });
  }

  async countObjects(ref: ObjectRef): Promise<number> {
    return this.withSession('C_FindObjects', (s) => findAll(this.p11, s, idTemplate(ref)).length);
  }

  /**
   * Also warms the handle cache: an id exactly one key object carries is cached (with every key
   * object read, not only those under the prefix, so an id shared with someone else's object stays
   * uncached and its lookup refuses it). Start-up lists once for reconciliation, so the first use of
   * each key needs no search of its own (a linear C_FindObjects on SoftHSM2: ~40 ms at 2,400 objects).
   */
  async listKeyObjects(labelPrefix: string): Promise<ObjectRef[]> {
    return this.withSession('C_FindObjects', (s) => {
      const found: ObjectRef[] = [];
      const handlesById = new Map<string, pkcs11js.Handle[]>();
      // By class: every key object has CKA_LABEL and CKA_ID, so one read per object answers both.
      for (const objectClass of [pkcs11js.CKO_SECRET_KEY, pkcs11js.CKO_PRIVATE_KEY, pkcs11js.CKO_PUBLIC_KEY]) {
        for (const h of findAll(this.p11, s, [{ type: pkcs11js.CKA_TOKEN, value: true }, { type: pkcs11js.CKA_CLASS, value: objectClass }])) {
          let label: Buffer;
          let id: Buffer;
          try {
            [label, id] = this.p11.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_LABEL }, { type: pkcs11js.CKA_ID }]).map((a) => a.value as Buffer);
          } catch (err) {
            // Destroyed by someone else since the search found it: it is not on the token any more.
            if (err instanceof HsmError && err.kind === 'key') continue;
            throw err;
          }
          const text = label.toString('utf8');
          const hex = id.toString('hex');
          handlesById.set(hex, [...(handlesById.get(hex) ?? []), h]);
          if (text.startsWith(labelPrefix)) found.push({ id: hex, label: text });
        }
      }
      for (const [hex, handles] of handlesById) if (handles.length === 1) this.handles.set(hex, handles[0]);
      return found;
    });
  }

  async inspectKeyObjects(ref: ObjectRef): Promise<KeyObjectFacts[]> {
    return this.withSession('C_GetAttributeValue', (s) => readObjectFacts(this.p11, s, idTemplate(ref)));
  }

  async health(): Promise<HsmHealth> {
    if (!this.isUp) return { isUp: false, detail: 'token unavailable; reconnecting' };
    try {
      const info = this.p11.C_GetTokenInfo(this.slot);
      await this.randomBytes(1); // proves a session works
      if (!(await this.isLoggedIn())) {
        // A lost login is redone here too, so that an idle gateway becomes ready again.
        await this.pool.use((s) => login(this.p11, s, this.options.pin), () => false);
        if (!(await this.isLoggedIn())) return { isUp: false, detail: 'the token session is not logged in' };
      }
      return { isUp: true, detail: `token '${info.label.trim()}' (${info.model.trim()}) answers, logged in` };
    } catch (err) {
      return { isUp: false, detail: err instanceof Error ? err.message : String(err) };
    }
  }

  /** The login is per token and application, so one pooled session's state speaks for all. */
  private async isLoggedIn(): Promise<boolean> {
    return (await this.withSession('C_GetSessionInfo', (s) => this.p11.C_GetSessionInfo(s).state)) === CKS_RW_USER_FUNCTIONS;
  }

  /**
   * Closes this instance's sessions, then finalises and unloads the module unless another thread
   * may be inside it: an abandoned HSM thread (mayFinalize), or a key-pair generation still on the
   * libuv pool after a bounded wait. The process ends soon after anyway; pulling the module from
   * under a thread in a call is undefined behaviour.
   */
  async close(): Promise<void> {
    clearInterval(this.recovery);
    // Let key-pair generations on the libuv pool end first (bounded: shutdown goes on).
    for (const deadline = performance.now() + CLOSE_WAIT_MS; this.asyncInFlight > 0 && performance.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 20));
    }
    this.closeSessions(this.pool.drain());
    if (!this.mayFinalize || this.asyncInFlight > 0) return;
    try {
      this.p11.C_Finalize();
    } finally {
      this.p11.close();
    }
  }

  private closeSessions(sessions: Session[]): void {
    for (const s of sessions) {
      try {
        this.p11.C_CloseSession(s);
      } catch {
        // closing anyway
      }
    }
  }

  private remember(ref: ObjectRef, handle: pkcs11js.Handle): void {
    this.handles.set(ref.id, handle);
  }

  /** The one token object with the ref's id: none or several is HsmError 'key' naming it, never a guess. */
  private lookUp(s: Session, ref: ObjectRef, fn: string): pkcs11js.Handle {
    const found = findAll(this.p11, s, idTemplate(ref));
    if (found.length === 1) return found[0];
    const problem = found.length === 0 ? `no token object has the CKA_ID of ${ref.label}` : `${found.length} token objects carry the CKA_ID of ${ref.label}: refusing to guess which holds the key`;
    throw new HsmError('key', fn, found.length === 0 ? 'CKR_OBJECT_HANDLE_INVALID' : undefined, { cause: new Error(problem) });
  }

  /**
   * Runs fn with the key's handle: cached, or looked up by id on first use. A handle that went
   * stale (the object destroyed by another process, or the module re-initialised by another
   * thread) is looked up once more.
   */
  private async withKey<T>(ref: ObjectRef, fn: string, body: (s: Session, key: pkcs11js.Handle) => T): Promise<T> {
    return this.withSession(fn, (s) => {
      const cached = this.handles.get(ref.id);
      if (cached !== undefined) {
        try {
          return body(s, cached);
        } catch (err) {
          if (classifyCkr(ckrName(err)) !== 'key') throw err;
          this.handles.delete(ref.id);
        }
      }
      const handle = this.lookUp(s, ref, fn);
      this.handles.set(ref.id, handle);
      return body(s, handle);
    });
  }

  /**
   * Runs body on a pooled session, and heals what can be healed (STYLE.md habit 6): a broken
   * session is replaced and the call retried once; a lost login is redone and the call retried
   * once; a device failure opens the circuit breaker — calls fail fast with HsmError 'device'
   * (KeyUnavailableException) while a timer finalises and re-initialises every second until the
   * token answers again.
   */
  private async withSession<T>(fn: string, body: (s: Session) => T, isRetry = false): Promise<T> {
    if (!this.isUp) throw new HsmError('device', fn, 'CKR_DEVICE_REMOVED');
    const recycleAfter = this.options.recycleAfterSessionObjects;
    // Postponed while another thread may be inside the module (an abandoned HSM thread, a key pair
    // being generated on the libuv pool): C_Finalize would pull the module from under it.
    if (recycleAfter !== undefined && this.sessionObjects >= recycleAfter && this.mayFinalize && this.asyncInFlight === 0) await this.recycle();
    try {
      return await this.pool.use((s) => call(fn, () => body(s)), (err) => err instanceof HsmError && err.kind === 'session');
    } catch (err) {
      if (!(err instanceof HsmError)) throw err;
      if (err.kind === 'device') this.openCircuit(err);
      else if (!isRetry && err.kind === 'session') return this.withSession(fn, body, true);
      else if (!isRetry && err.ckr === 'CKR_USER_NOT_LOGGED_IN') {
        await this.pool.use((s) => login(this.p11, s, this.options.pin), () => false);
        return this.withSession(fn, body, true);
      }
      throw err;
    }
  }

  /**
   * withSession for a call that makes token objects with a ref's id: never repeated. After a
   * session error its outcome is unknown (the token may have made the object and lost the answer),
   * and a second object with the id would make the key ambiguous; the caller's rollback destroys
   * whatever carries the id instead (key-material.ts).
   */
  private async creating<T>(fn: string, body: (s: Session) => T): Promise<T> {
    return this.withSession(fn, body, true);
  }

  private sessionObjectCreated(handle: pkcs11js.Handle): pkcs11js.Handle {
    this.sessionObjects++;
    return handle;
  }

  /**
   * C_Finalize and connect again, between calls: every call body but key-pair generation is
   * synchronous (and that one is waited for), so none is in the middle of a PKCS#11 call here.
   * A token that does not come back opens the circuit.
   */
  private async recycle(): Promise<void> {
    const objects = this.sessionObjects;
    this.sessionObjects = 0;
    const started = performance.now();
    try {
      this.p11.C_Finalize();
      await this.connect();
    } catch (err) {
      const cause = err instanceof HsmError ? err : new HsmError('device', 'C_Initialize', ckrName(err), { cause: err });
      this.openCircuit(cause);
      throw cause;
    }
    this.options.onRecycle?.(objects, performance.now() - started);
  }

  private openCircuit(cause: HsmError): void {
    if (!this.isUp) return;
    this.options.onStateChange?.(false, cause.message);
    this.recovery = setInterval(() => void this.tryReconnect(), RECOVERY_INTERVAL_MS);
    this.recovery.unref();
  }

  /**
   * One attempt to heal the open circuit. Normally C_Finalize and a fresh C_Initialize, which
   * resets whatever state the library was left in. While another thread may be inside the module
   * (mayFinalize false) it only closes this instance's sessions and opens new ones and logs in
   * again; a library that needs the reset heals once that thread has left. Never under a key-pair
   * generation on the libuv pool: it fails or ends soon on a down token, and one that never settles
   * is the HSM thread watchdog's to abandon.
   */
  private async tryReconnect(): Promise<void> {
    if (this.asyncInFlight > 0) return;
    const isFinalizing = this.mayFinalize;
    if (isFinalizing) {
      try {
        this.p11.C_Finalize();
      } catch {
        // not initialised, or already finalised: either way start afresh
      }
    } else {
      this.closeSessions(this.pool.drain());
    }
    try {
      await this.connect();
      clearInterval(this.recovery);
      this.recovery = undefined;
      this.options.onStateChange?.(true, isFinalizing ? 'token answers again' : 'token answers again (sessions reopened without C_Finalize: another thread may be inside the module)');
    } catch {
      // still down; the next tick tries again
    }
  }
}

/**
 * Found here: SoftHSM2 binds to the OpenSSL that Node itself exports, so a failed operation (a bad
 * OAEP ciphertext, a bad KWP blob) leaves its error on this thread's OpenSSL error queue, and the
 * next node:crypto key import on the thread throws that stale error ("rsa routines::padding check
 * failed"). crypto.randomBytes clears the queue; it runs after every failed PKCS#11 call and
 * before QKMS encodes keys with node:crypto.
 */
function drainOpenSslErrors(): void {
  crypto.randomBytes(1);
}

/**
 * The module with every C_* call timed and counted (two clock reads and a bucket scan: the
 * calls themselves take tens of µs), the fault plan applied when set, and every failure turned
 * into an HsmError classified here, where the failing function is known (a token's quirk may be
 * one function's, profiles.ts integrityErrors). An injected fault counts as the function's
 * failure, as the token's own would. The *Async forms are timed until they settle.
 */
function instrumented(p11: pkcs11js.PKCS11, calls: CallRecorder, { faults, integrityErrors }: { faults?: FaultPlan; integrityErrors?: IntegrityErrors }): pkcs11js.PKCS11 {
  // One wrapper per function, made on first use: not a new closure on every call.
  const wrappers = new Map<string | symbol, unknown>();
  return new Proxy(p11, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      let wrapper = wrappers.get(prop);
      if (!wrapper) {
        wrapper = wrap(target, prop, value as (...a: unknown[]) => unknown);
        wrappers.set(prop, wrapper);
      }
      return wrapper;
    },
  });

  function wrap(target: pkcs11js.PKCS11, prop: string | symbol, value: (...a: unknown[]) => unknown): unknown {
    if (typeof prop !== 'string' || !prop.startsWith('C_')) return value.bind(target); // native methods need the real this
    // The *Async forms are the same PKCS#11 function to a token's quirks.
    const fn = prop.replace(/Async$/, '');
    return (...args: unknown[]) => {
      const started = performance.now();
      const done = (err?: unknown) => calls.record(prop, (performance.now() - started) / 1000, err === undefined ? undefined : (ckrName(err) ?? 'unknown'));
      const failed = (err: unknown) => {
        done(err);
        return classified(fn, err, integrityErrors);
      };
      try {
        const delayMs = faults?.apply(prop) ?? 0;
        if (delayMs > 0) {
          // An *Async call held back (a slow device): the thread stays free meanwhile.
          return new Promise((resolve) => setTimeout(resolve, delayMs))
            .then(() => (value as (...a: unknown[]) => Promise<unknown>).apply(target, args))
            .then(
              (v) => (done(), v),
              (err: unknown) => Promise.reject(failed(err)),
            );
        }
        const result = value.apply(target, args);
        if (result instanceof Promise) {
          const settled = result.then((v) => (done(), v), (err: unknown) => Promise.reject(failed(err)));
          // A hold after an *Async call: the result waits, the thread does not.
          return faults ? settled.then(async (v) => (await new Promise((r) => setTimeout(r, faults.apply(prop, true))), v)) : settled;
        }
        done();
        faults?.apply(prop, true);
        return result;
      } catch (err) {
        const classifiedErr = failed(err);
        drainOpenSslErrors();
        throw classifiedErr;
      }
    };
  }
}

/** Runs a PKCS#11 call and turns Pkcs11Error into a classified HsmError. */
function call<T>(fn: string, body: () => T): T {
  try {
    const result = body();
    // An async body (key-pair generation on the libuv pool) is classified when it settles.
    if (result instanceof Promise) return result.catch((err: unknown) => Promise.reject(classified(fn, err))) as T;
    return result;
  } catch (err) {
    throw classified(fn, err);
  }
}

function classified(fn: string, err: unknown, integrityErrors?: IntegrityErrors): HsmError {
  if (err instanceof HsmError) return err;
  const ckr = ckrName(err);
  return new HsmError(classifyCkr(ckr, fn, integrityErrors), fn, ckr, { cause: err });
}

function initialize(p11: pkcs11js.PKCS11): void {
  try {
    // Without CKF_OS_LOCKING_OK SoftHSM2 disables all its locks (pkcs11-and-clients.md §1.4).
    p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (err) {
    if (ckrName(err) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') throw new HsmError('device', 'C_Initialize', ckrName(err), { cause: err });
  }
}

export function findSlotByLabel(p11: pkcs11js.PKCS11, label: string): pkcs11js.Handle {
  // By label, never by index: SoftHSM2 renumbers slots when a token is initialised.
  for (const slot of call('C_GetSlotList', () => p11.C_GetSlotList(true))) {
    if (p11.C_GetTokenInfo(slot).label.trim() === label) return slot;
  }
  throw new HsmError('config', 'C_GetSlotList', undefined, { cause: new Error(`no token labelled '${label}'`) });
}

function login(p11: pkcs11js.PKCS11, session: Session, pin: string): void {
  try {
    p11.C_Login(session, pkcs11js.CKU_USER, pin);
  } catch (err) {
    if (ckrName(err) !== 'CKR_USER_ALREADY_LOGGED_IN') throw new HsmError('auth', 'C_Login', ckrName(err), { cause: err });
  }
}

/** KMS pairs each ECDSA hash with one curve size (key-spec.ts): the r and s length of raw signatures. */
const ECDSA_FIELD_BYTES: Record<SigningScheme['hash'], number> = { SHA256: 32, SHA384: 48, SHA512: 66 };

function hmacMechanism(hash: Hash): { mechanism: number; bytes: number } {
  if (hash === 'SHA1') throw new HsmError('config', 'C_SignInit', 'CKR_MECHANISM_INVALID');
  return HMAC_BY_HASH[hash];
}

/** The mechanism and the bytes to sign for a digest: PSS and ECDSA take it as is, PKCS#1 v1.5 as DigestInfo. */
function signatureMechanism(scheme: SigningScheme, digest: Buffer): { mechanism: pkcs11js.Mechanism; input: Buffer } {
  switch (scheme.scheme) {
    case 'RSA_PSS':
      return { mechanism: rsaPss(scheme.hash), input: digest };
    case 'RSA_PKCS1':
      return { mechanism: RSA_PKCS, input: Buffer.concat([DIGEST_INFO_PREFIX[scheme.hash], digest]) };
    case 'ECDSA':
      return { mechanism: ECDSA, input: digest };
    case 'EDDSA':
      return { mechanism: EDDSA, input: digest }; // pure Ed25519: the message itself
  }
}

/** Token objects with the ref's CKA_ID. */
function idTemplate(ref: ObjectRef): pkcs11js.Template {
  return [
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_ID, value: Buffer.from(ref.id, 'hex') },
  ];
}

/** A CK_ULONG attribute value (8 bytes little-endian on 64-bit Linux, 4 elsewhere). */
function ulong(value: Buffer): number {
  return value.length === 8 ? Number(value.readBigUInt64LE(0)) : value.readUInt32LE(0);
}
