import crypto from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import type { CapabilityName } from '../capabilities';
import { HsmError } from '../hsm-error';
import { IS_DOWN, ProbeKit, SECRET } from './probe-kit';
import { unwrapEcPoint } from './der';
import { decodeOaep } from '../rsa-oaep';
import { CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA, mechanismName, RSA_X_509, rsaOaep, rsaPss } from './mechanisms';
import { CURVE_OIDS, ephemeralDataKeyTemplate } from './templates';

/**
 * The key-pair half of capability discovery (capability-probes.ts): throwaway session key pairs,
 * each signing, verifying, encrypting or deriving once, so that what the token lists is proven to work.
 */

/** What the RSA probes found: the sizes the token makes, and how it does RSAES_OAEP_SHA_256 (TokenCapabilities). */
export interface RsaFindings {
  bits?: { min: number; max: number };
  oaepSha256?: 'native' | 'raw-rsa';
}

/** A throwaway RSA pair of the smallest size the token makes (at least 1024 bits): PSS, PKCS#1 and OAEP round trips. */
export function probeRsa(probe: ProbeKit, gen: pkcs11js.MechanismInfo | undefined): RsaFindings {
  let pair: pkcs11js.KeyPair | undefined;
  // Small to keep the start quick; a token that refuses small keys although it lists them (a FIPS
  // mode) gets the smallest size KMS uses.
  const sizes = [...new Set([Math.max(1024, gen?.minKeySize ?? 0), 2048])];
  probe.check('rsa-keys', pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN, () => {
    for (const [i, bits] of sizes.entries()) {
      try {
        pair = probe.p11.C_GenerateKeyPair(probe.s, { mechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN }, ...sessionPair([{ type: pkcs11js.CKA_MODULUS_BITS, value: bits }, { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) }], true));
        return true;
      } catch (err) {
        if (i === sizes.length - 1 || (err instanceof HsmError && IS_DOWN.includes(err.kind))) throw err;
      }
    }
    return 'makes no key pair';
  });
  const signs = (name: CapabilityName, mechanism: pkcs11js.Mechanism, input: Buffer) =>
    probe.check(name, mechanism.mechanism, () => (pair ? signsAndVerifies(probe, pair, mechanism, input) : 'needs an RSA key pair, which the token did not make'));
  signs('rsa-pss', rsaPss('SHA256'), crypto.createHash('sha256').update(SECRET).digest());
  signs('rsa-pkcs1', { mechanism: pkcs11js.CKM_RSA_PKCS }, SECRET);
  let oaepSha256: RsaFindings['oaepSha256'];
  for (const hash of ['SHA1', 'SHA256'] as const) {
    const ok = probe.check(hash === 'SHA1' ? 'rsa-oaep-sha1' : 'rsa-oaep-sha256', pkcs11js.CKM_RSA_PKCS_OAEP, () => {
      if (!pair) return 'needs an RSA key pair, which the token did not make';
      probe.p11.C_EncryptInit(probe.s, rsaOaep(hash), pair.publicKey);
      const ct = Buffer.from(probe.p11.C_Encrypt(probe.s, SECRET, Buffer.alloc(1024)));
      probe.p11.C_DecryptInit(probe.s, rsaOaep(hash), pair.privateKey);
      return Buffer.from(probe.p11.C_Decrypt(probe.s, ct, Buffer.alloc(1024))).equals(SECRET) || `does not decrypt what it encrypted with ${hash}`;
    });
    if (hash === 'SHA256' && ok) oaepSha256 = 'native';
  }
  if (!oaepSha256 && pair && probeRawOaep(probe, pair)) oaepSha256 = 'raw-rsa';
  if (pair) destroyPair(probe, pair);
  return { bits: pair && gen ? { min: Math.max(1024, gen.minKeySize), max: gen.maxKeySize } : undefined, oaepSha256 };
}

/**
 * Where CKM_RSA_PKCS_OAEP refuses SHA-256: raw RSA (CKM_RSA_X_509) with the private key, on a
 * ciphertext node:crypto made with OAEP-SHA-256 and the pair's public key, must give a block the
 * gateway's decoder (rsa-oaep.ts) turns back into the message — the whole route QKMS then takes.
 * The 'rsa-oaep-sha256' check then names CKM_RSA_X_509 and says why; otherwise it keeps the native
 * refusal, with the raw one added.
 */
function probeRawOaep(probe: ProbeKit, pair: pkcs11js.KeyPair): boolean {
  const native = probe.checks['rsa-oaep-sha256'];
  const ok = probe.check('rsa-oaep-sha256', pkcs11js.CKM_RSA_X_509, () => {
    const [n, e] = probe.p11.C_GetAttributeValue(probe.s, pair.publicKey, [{ type: pkcs11js.CKA_MODULUS }, { type: pkcs11js.CKA_PUBLIC_EXPONENT }]).map((a) => Buffer.from(a.value));
    const key = crypto.createPublicKey({ key: { kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url') }, format: 'jwk' });
    const ct = crypto.publicEncrypt({ key, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, SECRET);
    probe.p11.C_DecryptInit(probe.s, RSA_X_509, pair.privateKey);
    const block = Buffer.from(probe.p11.C_Decrypt(probe.s, ct, Buffer.alloc(ct.length)));
    if (block.length !== ct.length) return `gives ${block.length} bytes for a ${ct.length}-byte modulus`;
    return decodeOaep(block, 'SHA256')?.equals(SECRET) || 'does not give back the OAEP block node:crypto encrypted';
  });
  const raw = probe.checks['rsa-oaep-sha256'];
  probe.checks['rsa-oaep-sha256'] = ok
    ? { ...raw, detail: `known answer verified: raw RSA in the HSM, OAEP-SHA-256 checked in QKMS (${native.mechanism} with SHA-256 ${native.detail})` }
    : { ...native, detail: `${native.detail}; raw RSA (${raw.mechanism}) ${raw.detail}` };
  return ok;
}

/** One throwaway pair per curve (ECDSA and ECDH on P-256), and Ed25519 with EdDSA. */
export function probeEc(probe: ProbeKit): void {
  const curves = [['ec-p256', 'P-256'], ['ec-p384', 'P-384'], ['ec-p521', 'P-521'], ['ec-secp256k1', 'secp256k1']] as const;
  let p256: pkcs11js.KeyPair | undefined;
  for (const [name, curve] of curves) {
    probe.check(name, pkcs11js.CKM_EC_KEY_PAIR_GEN, () => {
      const pair = probe.p11.C_GenerateKeyPair(probe.s, { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN }, ...sessionPair([{ type: pkcs11js.CKA_EC_PARAMS, value: CURVE_OIDS[curve] }], false));
      if (curve === 'P-256') p256 = pair;
      else destroyPair(probe, pair);
      return true;
    });
  }
  const digest = crypto.createHash('sha256').update(SECRET).digest();
  probe.check('ecdsa', pkcs11js.CKM_ECDSA, () => (p256 ? signsAndVerifies(probe, p256, { mechanism: pkcs11js.CKM_ECDSA }, digest) : 'needs a P-256 key pair, which the token did not make'));
  probe.check('ecdh', pkcs11js.CKM_ECDH1_DERIVE, () => {
    if (!p256) return 'needs a P-256 key pair, which the token did not make';
    const [point] = probe.p11.C_GetAttributeValue(probe.s, p256.publicKey, [{ type: pkcs11js.CKA_EC_POINT }]);
    const params = { type: pkcs11js.CK_PARAMS_EC_DH, kdf: pkcs11js.CKD_NULL, publicData: unwrapEcPoint(point.value) } as pkcs11js.ECDH1;
    const derived = probe.p11.C_DeriveKey(probe.s, { mechanism: pkcs11js.CKM_ECDH1_DERIVE, parameter: params }, p256.privateKey, ephemeralDataKeyTemplate(32));
    probe.p11.C_DestroyObject(probe.s, derived);
    return true;
  });
  if (p256) destroyPair(probe, p256);
  probe.check('ed25519', CKM_EC_EDWARDS_KEY_PAIR_GEN, () => {
    if (!probe.listed.has(CKM_EDDSA)) return `${mechanismName(CKM_EDDSA)} is not listed by the token`;
    const pair = probe.p11.C_GenerateKeyPair(probe.s, { mechanism: CKM_EC_EDWARDS_KEY_PAIR_GEN }, ...sessionPair([{ type: pkcs11js.CKA_EC_PARAMS, value: CURVE_OIDS.Ed25519 }], false));
    try {
      return signsAndVerifies(probe, pair, { mechanism: CKM_EDDSA }, SECRET);
    } finally {
      destroyPair(probe, pair);
    }
  });
}

function signsAndVerifies(probe: ProbeKit, pair: pkcs11js.KeyPair, mechanism: pkcs11js.Mechanism, input: Buffer): true | string {
  probe.p11.C_SignInit(probe.s, mechanism, pair.privateKey);
  const signature = Buffer.from(probe.p11.C_Sign(probe.s, input, Buffer.alloc(1024)));
  probe.p11.C_VerifyInit(probe.s, mechanism, pair.publicKey);
  return probe.p11.C_Verify(probe.s, input, signature) || 'does not verify its own signature';
}

function destroyPair(probe: ProbeKit, pair: pkcs11js.KeyPair): void {
  probe.p11.C_DestroyObject(probe.s, pair.privateKey);
  probe.p11.C_DestroyObject(probe.s, pair.publicKey);
}

/** Throwaway session key-pair templates: `encrypts` for RSA (OAEP), sign/verify always. */
function sessionPair(shape: pkcs11js.Template, encrypts: boolean): [pkcs11js.Template, pkcs11js.Template] {
  return [
    [{ type: pkcs11js.CKA_TOKEN, value: false }, ...shape, { type: pkcs11js.CKA_VERIFY, value: true }, ...(encrypts ? [{ type: pkcs11js.CKA_ENCRYPT, value: true }] : [])],
    [{ type: pkcs11js.CKA_TOKEN, value: false }, { type: pkcs11js.CKA_SIGN, value: true }, ...(encrypts ? [{ type: pkcs11js.CKA_DECRYPT, value: true }] : [{ type: pkcs11js.CKA_DERIVE, value: true }])],
  ];
}
