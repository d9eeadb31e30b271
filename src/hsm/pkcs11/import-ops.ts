import crypto from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import type { ImportedFacts, ImportRequest, ImportTarget } from '../hsm';
import { HsmError } from '../hsm-error';
import { encodeOctetString } from './der';
import { drainOpenSslErrors, withCleanup } from './instrumented-module';
import { AES_KEY_GEN, HMAC_BY_HASH, rsaOaep } from './mechanisms';
import type { OperationContext } from './operation-context';
import { ecPublicPoint, NODE_CURVES } from './ec-public-point';
import { checkValue, neverRetried, refusedTemplateIsUnsupported, stripZeros, unwrapping, withValue, type Materialize } from './import-steps';
import { CURVE_OIDS, importScratchTemplate, kekTemplate, macKeyTemplate, measuringWrapKeyTemplate, privateKeyTemplate, publicKeyTemplate, templateOptions } from './templates';
import type { Session } from './token-access';

/** What the HMAC check value of imported HMAC material is computed over (an identifier, not a secret). */
const HMAC_CHECK_INPUT = Buffer.from('QKMS imported key material check value', 'utf8');


/**
 * BYOK: imported material into token objects, inside the HSM (docs/crypto.md "Imported key
 * material"). Every object made along the way that is not the key's own (the ephemeral AES key of
 * RSA-AES key wrap, the copies the HSM measures or derives a public point from) is a session
 * object destroyed before the call returns. A failure after the key's objects were made leaves
 * them: the caller's intent rolls them back by id.
 */
export class ImportOps {
  constructor(
    private readonly ctx: OperationContext,
    /** Raw RSA in the HSM and OAEP decoding in the gateway, for an OAEP hash the token lacks. */
    private readonly decodeOaep: (s: Session, key: pkcs11js.Handle, hash: 'SHA1' | 'SHA256', ciphertext: Buffer) => Buffer,
  ) {}

  async importKeyMaterial(request: ImportRequest): Promise<ImportedFacts> {
    const facts = await this.ctx.objects.withKey(request.wrappingKey, 'C_UnwrapKey', (s, wrappingKey) => {
      const scratch: pkcs11js.Handle[] = [];
      // Material decoded in the gateway (an OAEP hash the token lacks): zeroed once the objects exist.
      const decoded: Buffer[] = [];
      const destroyScratch = () => {
        for (const b of decoded.splice(0)) b.fill(0);
        for (const h of scratch.splice(0)) this.ctx.p11.C_DestroyObject(s, h);
      };
      return withCleanup(() => {
        const materialize = this.materializer(s, wrappingKey, request, { scratch, decoded });
        this.ctx.connection.tokenWritten();
        const made = neverRetried(() => this.makeTarget(s, request, materialize, scratch));
        destroyScratch();
        return made;
      }, destroyScratch);
    });
    drainOpenSslErrors();
    return facts;
  }

  /** How the material becomes an object: RSAES-OAEP straight, or RSA-AES key wrap's two steps. */
  private materializer(s: Session, wrappingKey: pkcs11js.Handle, request: ImportRequest, { scratch, decoded }: { scratch: pkcs11js.Handle[]; decoded: Buffer[] }): Materialize {
    const { p11, connection } = this.ctx;
    const hash = request.algorithm.endsWith('_SHA_1') ? 'SHA1' : 'SHA256';
    // 'rsa-oaep-sha256' is ok on a token that does it as raw RSA too (rsaOaepSha256 'raw-rsa').
    const isNative = hash === 'SHA1' ? this.ctx.capabilities.checks['rsa-oaep-sha1'].ok : this.ctx.capabilities.rsaOaepSha256 === 'native';
    const oaepInto = (ciphertext: Buffer): Materialize => {
      if (isNative) return unwrapping((template) => p11.C_UnwrapKey(s, rsaOaep(hash), wrappingKey, ciphertext, template));
      const value = this.decodeOaep(s, wrappingKey, hash, ciphertext);
      decoded.push(value);
      return (template) => p11.C_CreateObject(s, withValue(template, value));
    };
    if (request.algorithm.startsWith('RSAES_OAEP_')) return oaepInto(request.encrypted);
    const [modulus] = p11.C_GetAttributeValue(s, wrappingKey, [{ type: pkcs11js.CKA_MODULUS }]);
    const rsaBytes = modulus.value.length;
    if (request.encrypted.length < rsaBytes + 16) throw new HsmError('integrity', 'C_UnwrapKey', 'CKR_WRAPPED_KEY_LEN_RANGE');
    const ephemeral = connection.sessionObjectCreated(oaepInto(request.encrypted.subarray(0, rsaBytes))(importScratchTemplate(pkcs11js.CKK_AES, 'unwrap')));
    scratch.push(ephemeral);
    const kwp = this.kwp();
    const wrapped = request.encrypted.subarray(rsaBytes);
    return unwrapping((template) => p11.C_UnwrapKey(s, kwp, ephemeral, wrapped, template));
  }

  private makeTarget(s: Session, request: ImportRequest, materialize: Materialize, scratch: pkcs11js.Handle[]): ImportedFacts {
    const { p11, objects } = this.ctx;
    const { target } = request;
    const options = { allowedMechanisms: this.ctx.capabilities.allowedMechanismsAttribute };
    // The material is no longer than what carried it: a bound for the wrap that measures it.
    const measure = (key: pkcs11js.Handle, keyType: number) =>
      this.valueBytes(s, { key, copy: () => materialize(importScratchTemplate(keyType, 'measure')), maxBytes: request.encrypted.length }, scratch);
    if (target.kind === 'AES') {
      const kek = materialize(kekTemplate(target.ref, { ...options, isImported: true }));
      objects.remember(target.ref, kek);
      const valueBytes = measure(kek, pkcs11js.CKK_AES);
      const check = checkValue(() => {
        p11.C_EncryptInit(s, { mechanism: pkcs11js.CKM_AES_CBC_PAD, parameter: Buffer.alloc(16) }, kek);
        return Buffer.from(p11.C_Encrypt(s, Buffer.alloc(16), Buffer.alloc(32))).subarray(0, 16);
      });
      return { check, valueBytes };
    }
    if (target.kind === 'HMAC') {
      const mechanism = { mechanism: HMAC_BY_HASH[target.hash as keyof typeof HMAC_BY_HASH].mechanism };
      const mac = materialize(macKeyTemplate(target.ref, 'imported', mechanism.mechanism, options));
      objects.remember(target.ref, mac);
      const valueBytes = measure(mac, pkcs11js.CKK_GENERIC_SECRET);
      const check = checkValue(() => {
        p11.C_SignInit(s, mechanism, mac);
        return Buffer.from(p11.C_Sign(s, HMAC_CHECK_INPUT, Buffer.alloc(64)));
      });
      return { check, valueBytes };
    }
    return this.makeKeyPair(s, target, materialize, scratch);
  }

  /**
   * The private key unwrapped; the public key made from it: RSA's modulus and exponent are public
   * attributes of the private object; an EC private object holds no point, so the HSM derives it:
   * ECDH with the generator gives the point's X, and a signature picks which of the two Ys it is.
   */
  private makeKeyPair(s: Session, target: Extract<ImportTarget, { kind: 'KEY_PAIR' }>, materialize: Materialize, scratch: pkcs11js.Handle[]): ImportedFacts {
    const { p11, objects, connection } = this.ctx;
    const { spec, usage, refs } = target;
    if (spec.family === 'EDWARDS') throw new HsmError('unsupported', 'C_UnwrapKey', undefined, { cause: new Error('Ed25519 material cannot be imported') });
    const options = templateOptions(this.ctx.capabilities);
    const keyType = spec.family === 'RSA' ? pkcs11js.CKK_RSA : pkcs11js.CKK_EC;
    const typed = (objectClass: number): pkcs11js.Template => [{ type: pkcs11js.CKA_CLASS, value: objectClass }, { type: pkcs11js.CKA_KEY_TYPE, value: keyType }];
    const privateKey = refusedTemplateIsUnsupported(() => materialize([...typed(pkcs11js.CKO_PRIVATE_KEY), ...privateKeyTemplate(refs.private, spec, usage, options)]));
    objects.remember(refs.private, privateKey);
    let shape: pkcs11js.Template;
    let jwk: crypto.JsonWebKey;
    let keyShape: ImportedFacts['keyShape'];
    if (spec.family === 'RSA') {
      const [n, e] = p11.C_GetAttributeValue(s, privateKey, [{ type: pkcs11js.CKA_MODULUS }, { type: pkcs11js.CKA_PUBLIC_EXPONENT }]).map((a) => stripZeros(a.value));
      shape = [{ type: pkcs11js.CKA_MODULUS, value: n }, { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: e }];
      jwk = { kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url') };
      keyShape = { bits: n.length * 8 - Math.clz32(n[0]) + 24 };
    } else {
      const [params] = p11.C_GetAttributeValue(s, privateKey, [{ type: pkcs11js.CKA_EC_PARAMS }]);
      const curve = Object.entries(CURVE_OIDS).find(([, oid]) => oid.equals(params.value))?.[0];
      if (!curve || !NODE_CURVES[curve]) return { check: Buffer.alloc(0), keyShape: { curve: curve ?? 'unknown' } };
      const copy = connection.sessionObjectCreated(materialize(importScratchTemplate(pkcs11js.CKK_EC, 'public-point', pkcs11js.CKO_PRIVATE_KEY)));
      scratch.push(copy);
      const point = ecPublicPoint(this.ctx, s, { copy, curve }, scratch);
      shape = [{ type: pkcs11js.CKA_EC_PARAMS, value: params.value }, { type: pkcs11js.CKA_EC_POINT, value: encodeOctetString(point) }];
      const half = (point.length - 1) / 2;
      jwk = { kty: 'EC', crv: curve, x: point.subarray(1, 1 + half).toString('base64url'), y: point.subarray(1 + half).toString('base64url') };
      keyShape = { curve };
    }
    objects.remember(refs.public, p11.C_CreateObject(s, [...typed(pkcs11js.CKO_PUBLIC_KEY), ...publicKeyTemplate(refs.public, spec, usage, options), ...shape]));
    return { check: crypto.createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'der' }), keyShape };
  }

  /**
   * A secret's length: CKA_VALUE_LEN where the token reports it; SoftHSM2 2.6.1 reports 0 for an
   * unwrapped key, so then the HSM wraps a second copy (RFC 5649) under an AES key it makes and
   * never reveals, and the length of that is the material's rounded up to 8 bytes.
   */
  private valueBytes(s: Session, { key, copy, maxBytes }: { key: pkcs11js.Handle; copy: () => pkcs11js.Handle; maxBytes: number }, scratch: pkcs11js.Handle[]): number | undefined {
    const { p11, connection } = this.ctx;
    const [len] = p11.C_GetAttributeValue(s, key, [{ type: pkcs11js.CKA_VALUE_LEN }]);
    const reported = len.value.length === 8 ? Number(len.value.readBigUInt64LE(0)) : len.value.readUInt32LE(0);
    if (reported > 0 || this.ctx.capabilities.kwpMechanism === undefined) return reported || undefined;
    const measured = connection.sessionObjectCreated(copy());
    scratch.push(measured);
    const wrapKey = connection.sessionObjectCreated(p11.C_GenerateKey(s, AES_KEY_GEN, measuringWrapKeyTemplate()));
    scratch.push(wrapKey);
    // RFC 5649 output: the value padded to a multiple of 8, plus 8 bytes.
    return p11.C_WrapKey(s, this.kwp(), wrapKey, measured, Buffer.alloc(maxBytes + 16)).length - 8;
  }

  private kwp(): pkcs11js.Mechanism {
    const mechanism = this.ctx.capabilities.kwpMechanism;
    if (mechanism === undefined) throw new HsmError('unsupported', 'C_UnwrapKey', 'CKR_MECHANISM_INVALID', { cause: new Error('RSA-AES key wrap needs an exact RFC 5649 unwrap, which this token lacks') });
    return { mechanism };
  }
}
