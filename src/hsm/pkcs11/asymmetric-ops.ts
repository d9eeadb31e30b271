import crypto from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import type { KeyPairSpec, KeyPairUsage, ObjectRef, SigningScheme } from '../hsm';
import { HsmError } from '../hsm-error';
import { isDeviceFaultOfTokenThatAnswers } from './connection';
import { ecdsaDerToRaw, ecdsaRawToDer, edwardsPoint, unwrapEcPoint } from './der';
import { drainOpenSslErrors, withCleanup } from './instrumented-module';
import { CKK_EC_EDWARDS, DIGEST_INFO_PREFIX, ECDSA, EDDSA, RSA_PKCS, rsaPss } from './mechanisms';
import type { OperationContext } from './operation-context';
import { CURVE_OIDS, ephemeralDataKeyTemplate, ephemeralKeyPairTemplates, keyPairGenMechanism, keyPairTemplates, templateOptions } from './templates';
import type { Session } from './token-access';

/** Key pairs: generation, public keys, signatures, ECDH, data key pairs (RSA encryption: rsa-oaep-ops.ts). */
export class AsymmetricOps {
  constructor(private readonly ctx: OperationContext) {}

  async generateKeyPair(refs: { private: ObjectRef; public: ObjectRef }, spec: KeyPairSpec, usage: KeyPairUsage): Promise<void> {
    const { publicKey, privateKey } = keyPairTemplates(refs, spec, usage, templateOptions(this.ctx.capabilities));
    await this.ctx.connection.creating('C_GenerateKeyPair', async (s) => {
      const pair = await this.generatePairOffThread(s, spec, publicKey, privateKey);
      this.ctx.objects.remember(refs.public, pair.publicKey);
      this.ctx.objects.remember(refs.private, pair.privateKey);
    });
  }

  /**
   * C_GenerateKeyPair on the libuv pool (pkcs11js's async form): RSA generation takes 0.3 s to
   * several seconds on SoftHSM2, and other calls go on meanwhile on other sessions. The async form
   * leaks ~250 B per call (pkcs11-and-clients.md §1.5), nothing at key-generation rates.
   */
  private async generatePairOffThread(s: Session, spec: KeyPairSpec, publicKey: pkcs11js.Template, privateKey: pkcs11js.Template): Promise<pkcs11js.KeyPair> {
    const async = this.ctx.p11 as unknown as { C_GenerateKeyPairAsync(...args: unknown[]): Promise<pkcs11js.KeyPair> };
    return this.ctx.connection.offThread(() => async.C_GenerateKeyPairAsync(s, keyPairGenMechanism(spec), publicKey, privateKey));
  }

  async publicKey(ref: ObjectRef): Promise<Buffer> {
    const { p11 } = this.ctx;
    const jwk = await this.ctx.objects.withKey(ref, 'C_GetAttributeValue', (s, key): crypto.JsonWebKey => {
      const [type] = p11.C_GetAttributeValue(s, key, [{ type: pkcs11js.CKA_KEY_TYPE }]);
      if (ulong(type.value) === pkcs11js.CKK_RSA) {
        const [n, e] = p11.C_GetAttributeValue(s, key, [{ type: pkcs11js.CKA_MODULUS }, { type: pkcs11js.CKA_PUBLIC_EXPONENT }]);
        return { kty: 'RSA', n: n.value.toString('base64url'), e: e.value.toString('base64url') };
      }
      if (ulong(type.value) === CKK_EC_EDWARDS) {
        const [point] = p11.C_GetAttributeValue(s, key, [{ type: pkcs11js.CKA_EC_POINT }]);
        return { kty: 'OKP', crv: 'Ed25519', x: edwardsPoint(point.value).toString('base64url') };
      }
      const [params, point] = p11.C_GetAttributeValue(s, key, [{ type: pkcs11js.CKA_EC_PARAMS }, { type: pkcs11js.CKA_EC_POINT }]);
      const crv = Object.entries(CURVE_OIDS).find(([, oid]) => oid.equals(params.value))?.[0];
      if (!crv) throw new HsmError('config', 'C_GetAttributeValue', undefined, { cause: new Error('unknown EC curve') });
      const xy = unwrapEcPoint(point.value).subarray(1);
      return { kty: 'EC', crv, x: xy.subarray(0, xy.length / 2).toString('base64url'), y: xy.subarray(xy.length / 2).toString('base64url') };
    });
    drainOpenSslErrors();
    return crypto.createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'der' });
  }

  async signDigest(ref: ObjectRef, scheme: SigningScheme, digest: Buffer): Promise<Buffer> {
    const { p11 } = this.ctx;
    return this.ctx.objects.withKey(ref, 'C_Sign', (s, key) => {
      const { mechanism, input } = signatureMechanism(scheme, digest);
      p11.C_SignInit(s, mechanism, key);
      const raw = Buffer.from(p11.C_Sign(s, input, Buffer.alloc(1024)));
      return scheme.scheme === 'ECDSA' ? ecdsaRawToDer(raw) : raw; // RSA and Ed25519 signatures are raw
    });
  }

  async verifyDigest(ref: ObjectRef, scheme: SigningScheme, digest: Buffer, signature: Buffer): Promise<boolean> {
    const { p11 } = this.ctx;
    // KMS pairs each ECDSA hash with one field size: SHA-256 P-256/secp256k1, SHA-384 P-384, SHA-512 P-521.
    const raw = scheme.scheme === 'ECDSA' ? ecdsaDerToRaw(signature, ECDSA_FIELD_BYTES[scheme.hash]) : signature;
    if (!raw) return false;
    try {
      return await this.ctx.objects.withKey(ref, 'C_Verify', (s, key) => {
        const { mechanism, input } = signatureMechanism(scheme, digest);
        p11.C_VerifyInit(s, mechanism, key);
        return p11.C_Verify(s, input, raw);
      });
    } catch (err) {
      // A wrong-length or garbled signature is an invalid signature, not a device problem; so is a
      // device-class answer of C_Verify itself once the connection's probe found the token well
      // (connection.ts: 'internal' caused by 'device'), as a vendor's code for a mismatch may be.
      if (err instanceof HsmError && (err.kind === 'integrity' || err.ckr === 'CKR_SIGNATURE_LEN_RANGE' || isDeviceFaultOfTokenThatAnswers(err, 'C_Verify'))) return false;
      throw err;
    }
  }

  async deriveSharedSecret(privateKey: ObjectRef, peerPoint: Buffer): Promise<Buffer> {
    const { p11, connection } = this.ctx;
    const fieldBytes = (peerPoint.length - 1) / 2;
    return this.ctx.objects.withKey(privateKey, 'C_DeriveKey', (s, key) => {
      const mechanism = { mechanism: pkcs11js.CKM_ECDH1_DERIVE, parameter: { type: pkcs11js.CK_PARAMS_EC_DH, kdf: pkcs11js.CKD_NULL, publicData: peerPoint } as pkcs11js.ECDH1 };
      const secret = connection.sessionObjectCreated(p11.C_DeriveKey(s, mechanism, key, ephemeralDataKeyTemplate(fieldBytes)));
      return withCleanup(
        () => Buffer.from(p11.C_GetAttributeValue(s, secret, [{ type: pkcs11js.CKA_VALUE }])[0].value),
        () => p11.C_DestroyObject(s, secret),
      );
    });
  }

  async generateDataKeyPair(spec: KeyPairSpec): Promise<{ privateKey: Buffer; publicKey: Buffer }> {
    const { p11, connection } = this.ctx;
    const { publicKey, privateKey } = ephemeralKeyPairTemplates(spec);
    const jwk = await connection.withSession('C_GenerateKeyPair', async (s): Promise<crypto.JsonWebKey> => {
      const pair = await this.generatePairOffThread(s, spec, publicKey, privateKey);
      connection.sessionObjectCreated(pair.publicKey);
      connection.sessionObjectCreated(pair.privateKey);
      const read = (h: pkcs11js.Handle, ...types: number[]) => p11.C_GetAttributeValue(s, h, types.map((type) => ({ type }))).map((a) => a.value);
      return withCleanup(
        () => dataKeyPairJwk(spec, pair, read),
        () => {
          p11.C_DestroyObject(s, pair.privateKey);
          p11.C_DestroyObject(s, pair.publicKey);
        },
      );
    });
    drainOpenSslErrors();
    const key = crypto.createPrivateKey({ key: jwk, format: 'jwk' });
    return { privateKey: key.export({ type: 'pkcs8', format: 'der' }), publicKey: crypto.createPublicKey(key).export({ type: 'spki', format: 'der' }) };
  }
}

type ReadAttributes = (h: pkcs11js.Handle, ...types: number[]) => Buffer[];

/** A generated data key pair as a private JWK, read from the token's objects. */
function dataKeyPairJwk(spec: KeyPairSpec, pair: pkcs11js.KeyPair, read: ReadAttributes): crypto.JsonWebKey {
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
}

/** KMS pairs each ECDSA hash with one curve size (key-spec.ts): the r and s length of raw signatures. */
const ECDSA_FIELD_BYTES: Record<SigningScheme['hash'], number> = { SHA256: 32, SHA384: 48, SHA512: 66 };

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

/** A CK_ULONG attribute value (8 bytes little-endian on 64-bit Linux, 4 elsewhere). */
function ulong(value: Buffer): number {
  return value.length === 8 ? Number(value.readBigUInt64LE(0)) : value.readUInt32LE(0);
}
