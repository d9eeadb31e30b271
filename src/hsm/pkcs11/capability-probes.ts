import crypto from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import type { CapabilityCheck, CapabilityName, TokenCapabilities } from '../capabilities';
import { HsmError } from '../hsm-error';
import { ckrName } from './ckr-table';
import { unwrapEcPoint } from './der';
import { aesGcm, CKM_AES_KEY_WRAP_KWP, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA, HMAC_BY_HASH, mechanismName, rsaOaep, rsaPss } from './mechanisms';
import { CURVE_OIDS, kekTemplate } from './templates';

/**
 * Capability discovery (capabilities.ts): the mechanism list, then a known-answer test of each
 * mechanism QKMS relies on, with throwaway objects. Keys with known values are session objects
 * made with C_CreateObject, compared with node:crypto's answer for the same inputs; the one token
 * object (the probe of a real KEK template) is destroyed at once, and one left by a crash in between
 * is destroyed by label on the next start.
 */
export const PROBE_LABEL = 'qkms-capability-probe';

type Session = pkcs11js.Handle;
/** Error kinds that say the token is unavailable, not what it can do. */
const IS_DOWN: readonly string[] = ['device', 'session', 'auth'];
type Checks = Record<CapabilityName, CapabilityCheck>;

export function discoverCapabilities(p11: pkcs11js.PKCS11, slot: pkcs11js.Handle, s: Session): TokenCapabilities {
  const listed = new Set(p11.C_GetMechanismList(slot));
  const info = p11.C_GetTokenInfo(slot);
  const lib = p11.C_GetInfo();
  const checks = {} as Checks;
  const probe = new Prober(p11, s, listed, checks);
  const allowedMechanismsAttribute = probe.tokenKek();
  probe.random();
  const genericSecretBytes = probe.genericSecrets();
  probe.symmetric();
  const rsaBits = probe.rsa(listed.has(pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN) ? p11.C_GetMechanismInfo(slot, pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN) : undefined);
  probe.ec();
  return {
    token: { manufacturer: info.manufacturerID.trim(), model: info.model.trim(), library: `${lib.libraryDescription.trim()} ${lib.libraryVersion.major}.${lib.libraryVersion.minor}` },
    checks,
    kwpMechanism: probe.kwpMechanism,
    genericSecretBytes,
    rsaBits,
    allowedMechanismsAttribute,
  };
}

/** Known data for the known-answer tests: nothing secret, nothing kept. */
const KEY = Buffer.alloc(32, 0x4b);
const SECRET = Buffer.from('0123456789abcdefghij'); // 20 bytes: not a multiple of 8, so KWP pads
const IV12 = Buffer.alloc(12, 0x01);
const IV16 = Buffer.alloc(16, 0x02);
const AAD = Buffer.from('qkms probe aad');
const RFC5649_IV = Buffer.from('a65959a6', 'hex');
/** Generic-secret lengths tried: the range found is the smallest to the largest that work. */
const SECRET_LENGTHS = [1, 8, 16, 32, 64, 256, 512, 1024];

class Prober {
  kwpMechanism?: number;

  constructor(
    private readonly p11: pkcs11js.PKCS11,
    private readonly s: Session,
    private readonly listed: Set<number>,
    private readonly checks: Checks,
  ) {}

  /** One check: not listed, or the body's verdict, or the CKR the token refused it with. */
  private check(name: CapabilityName, mechanism: number | string, body: () => string | true): boolean {
    const label = typeof mechanism === 'number' ? mechanismName(mechanism) : mechanism;
    if (typeof mechanism === 'number' && !this.listed.has(mechanism)) {
      this.checks[name] = { ok: false, mechanism: label, detail: 'is not listed by the token' };
      return false;
    }
    let verdict: string | true;
    try {
      verdict = body();
    } catch (err) {
      // A token that is down says nothing about what it can do: the open fails (exit 3), it is not judged.
      if (err instanceof HsmError && IS_DOWN.includes(err.kind)) throw err;
      verdict = `is listed but refused: ${ckrName(err) ?? (err instanceof Error ? err.message : String(err))}`;
    }
    this.checks[name] = verdict === true ? { ok: true, mechanism: label, detail: 'known answer verified' } : { ok: false, mechanism: label, detail: verdict };
    return verdict === true;
  }

  /**
   * A real KEK template as a token object, with CKA_ALLOWED_MECHANISMS and, if refused, without:
   * some tokens refuse the attribute (Cryptoki 2.20 modules) or refuse it on token objects only.
   * Returns whether the attribute is accepted.
   */
  tokenKek(): boolean {
    this.destroyLeftovers();
    const ref = { id: crypto.randomBytes(16).toString('hex'), label: PROBE_LABEL };
    let withAttribute = true;
    this.check('aes-token-keys', pkcs11js.CKM_AES_KEY_GEN, () => {
      let handle: pkcs11js.Handle;
      try {
        handle = this.p11.C_GenerateKey(this.s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, kekTemplate(ref, { allowedMechanisms: true }));
      } catch (err) {
        // Only a refusal of the template may drop the restriction, never a token that is down.
        if (err instanceof HsmError && IS_DOWN.includes(err.kind)) throw err;
        withAttribute = false;
        handle = this.p11.C_GenerateKey(this.s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, kekTemplate(ref, { allowedMechanisms: false }));
      }
      try {
        this.p11.C_DestroyObject(this.s, handle);
      } catch (err) {
        // Another process opening the same token destroyed it as a leftover: gone either way.
        if (!(err instanceof HsmError && err.kind === 'key')) throw err;
      }
      return true;
    });
    return withAttribute;
  }

  private destroyLeftovers(): void {
    this.p11.C_FindObjectsInit(this.s, [{ type: pkcs11js.CKA_TOKEN, value: true }, { type: pkcs11js.CKA_LABEL, value: PROBE_LABEL }]);
    const found = this.p11.C_FindObjects(this.s, 100);
    this.p11.C_FindObjectsFinal(this.s);
    for (const h of found) {
      try {
        this.p11.C_DestroyObject(this.s, h);
      } catch (err) {
        if (!(err instanceof HsmError && err.kind === 'key')) throw err; // its own process destroyed it meanwhile
      }
    }
  }

  random(): void {
    this.check('random', 'C_GenerateRandom', () => (this.p11.C_GenerateRandom(this.s, Buffer.alloc(32)).length === 32 ? true : 'returned fewer bytes than asked'));
  }

  /** Generic-secret generation (HMAC keys, KWP data keys) and which lengths it makes; HMAC by known answer. */
  genericSecrets(): { min: number; max: number } | undefined {
    const works: number[] = [];
    this.check('hmac-keys', pkcs11js.CKM_GENERIC_SECRET_KEY_GEN, () => {
      for (const bytes of SECRET_LENGTHS) {
        try {
          const h = this.p11.C_GenerateKey(this.s, { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN }, sessionSecret(bytes));
          this.p11.C_DestroyObject(this.s, h);
          works.push(bytes);
        } catch {
          // outside the token's range
        }
      }
      return works.includes(32) ? true : `makes no 32-byte key (lengths that work: ${works.join(', ') || 'none'})`;
    });
    for (const hash of ['SHA224', 'SHA256', 'SHA384', 'SHA512'] as const) {
      const { mechanism, bytes } = HMAC_BY_HASH[hash];
      // As long as the output, as KMS HMAC keys are (SoftHSM2 refuses shorter ones for SHA-384/512).
      const value = Buffer.alloc(bytes, 0x4d);
      this.check(`hmac-${hash.toLowerCase()}` as CapabilityName, mechanism, () =>
        this.withKnownKey(pkcs11js.CKK_GENERIC_SECRET, value, (key) => {
          this.p11.C_SignInit(this.s, { mechanism }, key);
          const mac = Buffer.from(this.p11.C_Sign(this.s, SECRET, Buffer.alloc(64)));
          return mac.equals(crypto.createHmac(hash.toLowerCase(), value).update(SECRET).digest()) || 'gives a MAC that is not HMAC';
        }),
      );
    }
    return works.length > 0 ? { min: Math.min(...works), max: Math.max(...works) } : undefined;
  }

  /**
   * RFC 5649 wrap (under either mechanism number), GCM encrypt and wrap, CBC: each against
   * node:crypto. A wrap is accepted when node's RFC 5649 unwrap of it gives the value back, exactly
   * or zero-padded to a multiple of 8 (SoftHSM2 2.6.1 wraps the zero-padded value; the blob's
   * authenticated length restores it, docs/hsm/softhsm2.md); NSS's CKM_AES_KEY_WRAP_PAD, RFC 3394
   * over PKCS#7 padding, fails that.
   */
  symmetric(): void {
    // CKM_AES_KEY_WRAP_PAD first: the KEKs of earlier releases allow only that number.
    for (const mechanism of [pkcs11js.CKM_AES_KEY_WRAP_PAD, CKM_AES_KEY_WRAP_KWP]) {
      const ok = this.check('aes-kwp', mechanism, () =>
        this.withKnownKey(pkcs11js.CKK_AES, KEY, (kek) =>
          this.withKnownSecret((secret) => {
            const wrapped = Buffer.from(this.p11.C_WrapKey(this.s, { mechanism }, kek, secret, Buffer.alloc(64)));
            if (!isSecretZeroPadded(unwrapPad(wrapped))) return 'is listed but its output is not RFC 5649';
            const back = this.p11.C_UnwrapKey(this.s, { mechanism }, kek, wrapped, sessionSecret());
            const value = Buffer.from(this.p11.C_GetAttributeValue(this.s, back, [{ type: pkcs11js.CKA_VALUE }])[0].value);
            this.p11.C_DestroyObject(this.s, back);
            return isSecretZeroPadded(value) || 'does not unwrap what it wrapped';
          }),
        ),
      );
      if (ok) {
        this.kwpMechanism = mechanism;
        break;
      }
    }
    const gcm = (): Buffer => {
      const c = crypto.createCipheriv('aes-256-gcm', KEY, IV12).setAAD(AAD);
      return Buffer.concat([c.update(SECRET), c.final(), c.getAuthTag()]);
    };
    this.check('aes-gcm', pkcs11js.CKM_AES_GCM, () =>
      this.withKnownKey(pkcs11js.CKK_AES, KEY, (key) => {
        this.p11.C_EncryptInit(this.s, aesGcm(IV12, AAD), key);
        const out = Buffer.from(this.p11.C_Encrypt(this.s, SECRET, Buffer.alloc(SECRET.length + 16)));
        if (!out.equals(gcm())) return 'is listed but its output is not AES-GCM with a 128-bit tag';
        this.p11.C_DecryptInit(this.s, aesGcm(IV12, AAD), key);
        return Buffer.from(this.p11.C_Decrypt(this.s, out, Buffer.alloc(out.length))).equals(SECRET) || 'does not decrypt what it encrypted';
      }),
    );
    this.check('aes-gcm-wrap', pkcs11js.CKM_AES_GCM, () =>
      this.withKnownKey(pkcs11js.CKK_AES, KEY, (kek) =>
        this.withKnownSecret((secret) => Buffer.from(this.p11.C_WrapKey(this.s, aesGcm(IV12, AAD), kek, secret, Buffer.alloc(64))).equals(gcm()) || 'wraps, but not as AES-GCM'),
      ),
    );
    this.check('aes-cbc', pkcs11js.CKM_AES_CBC_PAD, () =>
      this.withKnownKey(pkcs11js.CKK_AES, KEY, (key) => {
        const c = crypto.createCipheriv('aes-256-cbc', KEY, IV16);
        const want = Buffer.concat([c.update(SECRET), c.final()]);
        this.p11.C_EncryptInit(this.s, { mechanism: pkcs11js.CKM_AES_CBC_PAD, parameter: IV16 }, key);
        const out = Buffer.from(this.p11.C_Encrypt(this.s, SECRET, Buffer.alloc(SECRET.length + 16)));
        if (!out.equals(want)) return 'is listed but its output is not AES-CBC with PKCS#7 padding';
        this.p11.C_DecryptInit(this.s, { mechanism: pkcs11js.CKM_AES_CBC_PAD, parameter: IV16 }, key);
        return Buffer.from(this.p11.C_Decrypt(this.s, out, Buffer.alloc(out.length))).equals(SECRET) || 'does not decrypt what it encrypted';
      }),
    );
  }

  /** A throwaway RSA pair of the smallest size the token makes (at least 1024 bits): PSS, PKCS#1 and OAEP round trips. */
  rsa(gen: pkcs11js.MechanismInfo | undefined): { min: number; max: number } | undefined {
    let pair: pkcs11js.KeyPair | undefined;
    // Small to keep the start quick; a token that refuses small keys although it lists them (a FIPS
    // mode) gets the smallest size KMS uses.
    const sizes = [...new Set([Math.max(1024, gen?.minKeySize ?? 0), 2048])];
    this.check('rsa-keys', pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN, () => {
      for (const [i, bits] of sizes.entries()) {
        try {
          pair = this.p11.C_GenerateKeyPair(this.s, { mechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN }, ...sessionPair([{ type: pkcs11js.CKA_MODULUS_BITS, value: bits }, { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) }], true));
          return true;
        } catch (err) {
          if (i === sizes.length - 1 || (err instanceof HsmError && IS_DOWN.includes(err.kind))) throw err;
        }
      }
      return 'makes no key pair';
    });
    const signs = (name: CapabilityName, mechanism: pkcs11js.Mechanism, input: Buffer) =>
      this.check(name, mechanism.mechanism, () => (pair ? this.signsAndVerifies(pair, mechanism, input) : 'needs an RSA key pair, which the token did not make'));
    signs('rsa-pss', rsaPss('SHA256'), crypto.createHash('sha256').update(SECRET).digest());
    signs('rsa-pkcs1', { mechanism: pkcs11js.CKM_RSA_PKCS }, SECRET);
    for (const hash of ['SHA1', 'SHA256'] as const) {
      this.check(hash === 'SHA1' ? 'rsa-oaep-sha1' : 'rsa-oaep-sha256', pkcs11js.CKM_RSA_PKCS_OAEP, () => {
        if (!pair) return 'needs an RSA key pair, which the token did not make';
        this.p11.C_EncryptInit(this.s, rsaOaep(hash), pair.publicKey);
        const ct = Buffer.from(this.p11.C_Encrypt(this.s, SECRET, Buffer.alloc(1024)));
        this.p11.C_DecryptInit(this.s, rsaOaep(hash), pair.privateKey);
        return Buffer.from(this.p11.C_Decrypt(this.s, ct, Buffer.alloc(1024))).equals(SECRET) || `does not decrypt what it encrypted with ${hash}`;
      });
    }
    if (pair) this.destroyPair(pair);
    if (!pair || !gen) return undefined;
    return { min: Math.max(1024, gen.minKeySize), max: gen.maxKeySize };
  }

  /** One throwaway pair per curve (ECDSA and ECDH on P-256), and Ed25519 with EdDSA. */
  ec(): void {
    const curves = [['ec-p256', 'P-256'], ['ec-p384', 'P-384'], ['ec-p521', 'P-521'], ['ec-secp256k1', 'secp256k1']] as const;
    let p256: pkcs11js.KeyPair | undefined;
    for (const [name, curve] of curves) {
      this.check(name, pkcs11js.CKM_EC_KEY_PAIR_GEN, () => {
        const pair = this.p11.C_GenerateKeyPair(this.s, { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN }, ...sessionPair([{ type: pkcs11js.CKA_EC_PARAMS, value: CURVE_OIDS[curve] }], false));
        if (curve === 'P-256') p256 = pair;
        else this.destroyPair(pair);
        return true;
      });
    }
    const digest = crypto.createHash('sha256').update(SECRET).digest();
    this.check('ecdsa', pkcs11js.CKM_ECDSA, () => (p256 ? this.signsAndVerifies(p256, { mechanism: pkcs11js.CKM_ECDSA }, digest) : 'needs a P-256 key pair, which the token did not make'));
    this.check('ecdh', pkcs11js.CKM_ECDH1_DERIVE, () => {
      if (!p256) return 'needs a P-256 key pair, which the token did not make';
      const [point] = this.p11.C_GetAttributeValue(this.s, p256.publicKey, [{ type: pkcs11js.CKA_EC_POINT }]);
      const params = { type: pkcs11js.CK_PARAMS_EC_DH, kdf: pkcs11js.CKD_NULL, publicData: unwrapEcPoint(point.value) } as pkcs11js.ECDH1;
      const derived = this.p11.C_DeriveKey(this.s, { mechanism: pkcs11js.CKM_ECDH1_DERIVE, parameter: params }, p256.privateKey, sessionSecret(32));
      this.p11.C_DestroyObject(this.s, derived);
      return true;
    });
    if (p256) this.destroyPair(p256);
    this.check('ed25519', CKM_EC_EDWARDS_KEY_PAIR_GEN, () => {
      if (!this.listed.has(CKM_EDDSA)) return `${mechanismName(CKM_EDDSA)} is not listed by the token`;
      const pair = this.p11.C_GenerateKeyPair(this.s, { mechanism: CKM_EC_EDWARDS_KEY_PAIR_GEN }, ...sessionPair([{ type: pkcs11js.CKA_EC_PARAMS, value: CURVE_OIDS.Ed25519 }], false));
      try {
        return this.signsAndVerifies(pair, { mechanism: CKM_EDDSA }, SECRET);
      } finally {
        this.destroyPair(pair);
      }
    });
  }

  private signsAndVerifies(pair: pkcs11js.KeyPair, mechanism: pkcs11js.Mechanism, input: Buffer): true | string {
    this.p11.C_SignInit(this.s, mechanism, pair.privateKey);
    const signature = Buffer.from(this.p11.C_Sign(this.s, input, Buffer.alloc(1024)));
    this.p11.C_VerifyInit(this.s, mechanism, pair.publicKey);
    return this.p11.C_Verify(this.s, input, signature) || 'does not verify its own signature';
  }

  private destroyPair(pair: pkcs11js.KeyPair): void {
    this.p11.C_DestroyObject(this.s, pair.privateKey);
    this.p11.C_DestroyObject(this.s, pair.publicKey);
  }

  /** A session key with a known value, of an AES or generic-secret type, for one known-answer test. */
  private withKnownKey<T>(keyType: number, value: Buffer, body: (key: pkcs11js.Handle) => T): T {
    const key = this.p11.C_CreateObject(this.s, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: keyType },
      { type: pkcs11js.CKA_TOKEN, value: false },
      { type: pkcs11js.CKA_VALUE, value },
      ...[pkcs11js.CKA_ENCRYPT, pkcs11js.CKA_DECRYPT, pkcs11js.CKA_WRAP, pkcs11js.CKA_UNWRAP].map((type) => ({ type, value: keyType === pkcs11js.CKK_AES })),
      ...[pkcs11js.CKA_SIGN, pkcs11js.CKA_VERIFY].map((type) => ({ type, value: keyType !== pkcs11js.CKK_AES })),
    ]);
    try {
      return body(key);
    } finally {
      this.p11.C_DestroyObject(this.s, key);
    }
  }

  /** An extractable session generic secret with the known value SECRET, to be wrapped. */
  private withKnownSecret<T>(body: (secret: pkcs11js.Handle) => T): T {
    const secret = this.p11.C_CreateObject(this.s, [...sessionSecret(), { type: pkcs11js.CKA_VALUE, value: SECRET }]);
    try {
      return body(secret);
    } finally {
      this.p11.C_DestroyObject(this.s, secret);
    }
  }
}

/** An extractable session generic secret (of `bytes` when generated). */
function sessionSecret(bytes?: number): pkcs11js.Template {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
    { type: pkcs11js.CKA_TOKEN, value: false },
    { type: pkcs11js.CKA_SENSITIVE, value: false },
    { type: pkcs11js.CKA_EXTRACTABLE, value: true },
    ...(bytes === undefined ? [] : [{ type: pkcs11js.CKA_VALUE_LEN, value: bytes }]),
  ];
}

/** Throwaway session key-pair templates: `encrypts` for RSA (OAEP), sign/verify always. */
function sessionPair(shape: pkcs11js.Template, encrypts: boolean): [pkcs11js.Template, pkcs11js.Template] {
  return [
    [{ type: pkcs11js.CKA_TOKEN, value: false }, ...shape, { type: pkcs11js.CKA_VERIFY, value: true }, ...(encrypts ? [{ type: pkcs11js.CKA_ENCRYPT, value: true }] : [])],
    [{ type: pkcs11js.CKA_TOKEN, value: false }, { type: pkcs11js.CKA_SIGN, value: true }, ...(encrypts ? [{ type: pkcs11js.CKA_DECRYPT, value: true }] : [{ type: pkcs11js.CKA_DERIVE, value: true }])],
  ];
}

/** RFC 5649 unwrap under KEY by node:crypto (OpenSSL's id-aes256-wrap-pad); undefined when it does not verify. */
function unwrapPad(wrapped: Buffer): Buffer | undefined {
  try {
    const d = crypto.createDecipheriv('id-aes256-wrap-pad', KEY, RFC5649_IV);
    return Buffer.concat([d.update(wrapped), d.final()]);
  } catch {
    return undefined;
  }
}

/** SECRET, followed by fewer than 8 zero bytes. */
function isSecretZeroPadded(value: Buffer | undefined): boolean {
  if (!value || value.length < SECRET.length || value.length - SECRET.length >= 8) return false;
  return value.subarray(0, SECRET.length).equals(SECRET) && value.subarray(SECRET.length).every((b) => b === 0);
}
