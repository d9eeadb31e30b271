import * as pkcs11js from 'pkcs11js';
import { CallRecorder } from '../call-stats';
import type { DataKeyWrap, Hash, HmacKeySpec, Hsm, HsmHealth, HsmStats, ImportedFacts, ImportRequest, KeyObjectFacts, KeyPairSpec, KeyPairUsage, ObjectRef, SigningScheme, WrappedDataKey } from '../hsm';
import type { TokenCapabilities } from '../capabilities';
import { AsymmetricOps } from './asymmetric-ops';
import { discoverCapabilities } from './capability-probes';
import { Connection } from './connection';
import { FaultPlan } from './faults';
import { call, instrumented } from './instrumented-module';
import { ImportOps } from './import-ops';
import { ObjectIndex } from './object-index';
import type { OperationContext } from './operation-context';
import type { Pkcs11Options } from './pkcs11-options';
import { RsaOaepOps } from './rsa-oaep-ops';
import { SymmetricOps } from './symmetric-ops';

export type { Pkcs11Options } from './pkcs11-options';
export { findSlotByLabel } from './token-access';

/**
 * Hsm over pkcs11js, composed of one part per concern: the instrumented module
 * (instrumented-module.ts), the connection with its healing and circuit breaker (connection.ts),
 * the object index and handle cache (object-index.ts), and the operation groups (symmetric-ops.ts,
 * asymmetric-ops.ts, rsa-oaep-ops.ts), which get an OperationContext, not this class.
 *
 * Calls are synchronous: on SoftHSM2 a symmetric call takes tens of µs and the thread-pool hop of
 * the *Async variants costs more, and async GenerateKey/Wrap/Unwrap leak ~250 B per call
 * (pkcs11-and-clients.md §0, §1.5). Key-pair generation is the exception (asymmetric-ops.ts).
 */
export class Pkcs11Hsm implements Hsm {
  private readonly symmetric: SymmetricOps;
  private readonly asymmetric: AsymmetricOps;
  private readonly imports: ImportOps;
  private readonly rsaOaep: RsaOaepOps;

  private constructor(
    private readonly calls: CallRecorder,
    private readonly connection: Connection,
    private readonly objects: ObjectIndex,
    private readonly ctx: OperationContext,
  ) {
    this.symmetric = new SymmetricOps(ctx);
    this.asymmetric = new AsymmetricOps(ctx);
    this.rsaOaep = new RsaOaepOps(ctx, (ref) => this.asymmetric.publicKey(ref));
    this.imports = new ImportOps(ctx, (s, key, hash, ciphertext) => this.rsaOaep.rawDecrypt(s, key, hash, ciphertext));
  }

  /** Load the module once, then connect; a wrong PIN or label fails here, at boot. */
  static async open(options: Pkcs11Options): Promise<Pkcs11Hsm> {
    const calls = new CallRecorder();
    const module = new pkcs11js.PKCS11();
    const p11 = instrumented(module, calls, { faults: options.faultsFile ? new FaultPlan(options.faultsFile) : undefined, integrityErrors: options.integrityErrors });
    call('C_Load', () => p11.load(options.modulePath));
    let objects: ObjectIndex | undefined;
    const connection = new Connection(p11, options, () => objects?.clear());
    objects = new ObjectIndex(p11, connection);
    await connection.connect();
    try {
      // Before any key is made: the probes find what the token can do (capability-probes.ts). They
      // run outside the fault plan (a drill's faults and `skip` counts are for the gateway's work)
      // and outside the call statistics (a refused probe is no error of the token's to alert on).
      const probing = instrumented(module, new CallRecorder(), { integrityErrors: options.integrityErrors });
      const capabilities = options.capabilities ?? (await connection.withSession('C_GetMechanismList', (s) => discoverCapabilities(probing, connection.slot, connection.tokenInfo, s)));
      if (!options.capabilities) connection.tokenWritten(); // the probes make and destroy a token object
      return new Pkcs11Hsm(calls, connection, objects, { p11, connection, objects, options, capabilities });
    } catch (err) {
      await connection.close();
      throw err;
    }
  }

  capabilities(): TokenCapabilities {
    return this.ctx.capabilities;
  }

  get isUp(): boolean {
    return this.connection.isUp;
  }

  /** Whether C_Finalize is allowed now (mayFinalize in Pkcs11Options); the HSM thread's owner tells it. */
  setMayFinalize(allowed: boolean): void {
    this.connection.setMayFinalize(allowed);
  }

  /** How many times each C_* function was called since open (the benchmark reports calls per operation). */
  callCounts(): Record<string, number> {
    return this.calls.counts();
  }

  stats(): HsmStats {
    return { isUp: this.isUp, sessions: this.connection.sessionStats, queuedCalls: 0, pkcs11: this.calls.snapshot() };
  }

  /** Synchronous calls finish before the next starts: only those holding or waiting for a session (key-pair generation on the libuv pool). */
  pendingCalls(): number {
    const { inUse, waiters } = this.connection.sessionStats;
    return inUse + waiters;
  }

  health(): Promise<HsmHealth> {
    return this.connection.health();
  }

  close(): Promise<void> {
    return this.connection.close();
  }

  generateKek(ref: ObjectRef): Promise<void> {
    return this.symmetric.generateKek(ref);
  }

  generateMacKey(ref: ObjectRef, spec?: HmacKeySpec): Promise<void> {
    return this.symmetric.generateMacKey(ref, spec);
  }

  generateWrappedDataKey(kekRef: ObjectRef, lengthBytes: number, wrap: DataKeyWrap): Promise<WrappedDataKey> {
    return this.symmetric.generateWrappedDataKey(kekRef, lengthBytes, wrap);
  }

  importKeyMaterial(request: ImportRequest): Promise<ImportedFacts> {
    return this.imports.importKeyMaterial(request);
  }

  unwrapDataKey(kekRef: ObjectRef, wrapped: Buffer): Promise<Buffer> {
    return this.symmetric.unwrapDataKey(kekRef, wrapped);
  }

  encryptAesGcm(kekRef: ObjectRef, plaintext: Buffer, aad: Buffer): Promise<{ iv: Buffer; ciphertextAndTag: Buffer }> {
    return this.symmetric.encryptAesGcm(kekRef, plaintext, aad);
  }

  decryptAesGcm(kekRef: ObjectRef, ciphertextAndTag: Buffer, iv: Buffer, aad: Buffer): Promise<Buffer> {
    return this.symmetric.decryptAesGcm(kekRef, ciphertextAndTag, iv, aad);
  }

  encryptAesCbc(kekRef: ObjectRef, plaintext: Buffer): Promise<{ iv: Buffer; ciphertext: Buffer }> {
    return this.symmetric.encryptAesCbc(kekRef, plaintext);
  }

  decryptAesCbc(kekRef: ObjectRef, iv: Buffer, ciphertext: Buffer): Promise<Buffer> {
    return this.symmetric.decryptAesCbc(kekRef, iv, ciphertext);
  }

  hmacSign(macRef: ObjectRef, data: Buffer, hash?: Hash): Promise<Buffer> {
    return this.symmetric.hmacSign(macRef, data, hash);
  }

  hmacVerify(macRef: ObjectRef, data: Buffer, mac: Buffer, hash?: Hash): Promise<boolean> {
    return this.symmetric.hmacVerify(macRef, data, mac, hash);
  }

  randomBytes(length: number): Promise<Buffer> {
    return this.symmetric.randomBytes(length);
  }

  generateKeyPair(refs: { private: ObjectRef; public: ObjectRef }, spec: KeyPairSpec, usage: KeyPairUsage): Promise<void> {
    return this.asymmetric.generateKeyPair(refs, spec, usage);
  }

  publicKey(ref: ObjectRef): Promise<Buffer> {
    return this.asymmetric.publicKey(ref);
  }

  signDigest(ref: ObjectRef, scheme: SigningScheme, digest: Buffer): Promise<Buffer> {
    return this.asymmetric.signDigest(ref, scheme, digest);
  }

  verifyDigest(ref: ObjectRef, scheme: SigningScheme, digest: Buffer, signature: Buffer): Promise<boolean> {
    return this.asymmetric.verifyDigest(ref, scheme, digest, signature);
  }

  rsaEncrypt(ref: ObjectRef, hash: 'SHA1' | 'SHA256', plaintext: Buffer): Promise<Buffer> {
    return this.rsaOaep.encrypt(ref, hash, plaintext);
  }

  rsaDecrypt(ref: ObjectRef, hash: 'SHA1' | 'SHA256', ciphertext: Buffer): Promise<Buffer> {
    return this.rsaOaep.decrypt(ref, hash, ciphertext);
  }

  deriveSharedSecret(privateKey: ObjectRef, peerPoint: Buffer): Promise<Buffer> {
    return this.asymmetric.deriveSharedSecret(privateKey, peerPoint);
  }

  generateDataKeyPair(spec: KeyPairSpec): Promise<{ privateKey: Buffer; publicKey: Buffer }> {
    return this.asymmetric.generateDataKeyPair(spec);
  }

  destroyKey(ref: ObjectRef): Promise<number> {
    return this.objects.destroy(ref);
  }

  countObjects(ref: ObjectRef): Promise<number> {
    return this.objects.count(ref);
  }

  listKeyObjects(labelPrefix: string): Promise<ObjectRef[]> {
    return this.objects.list(labelPrefix);
  }

  inspectKeyObjects(ref: ObjectRef): Promise<KeyObjectFacts[]> {
    return this.objects.inspect(ref);
  }
}
