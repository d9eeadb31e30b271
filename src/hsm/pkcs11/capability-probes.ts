import crypto from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import type { CapabilityName, TokenCapabilities } from '../capabilities';
import { HsmError } from '../hsm-error';
import { probeEc, probeRsa } from './key-pair-probes';
import { aesGcm, CKM_AES_KEY_WRAP_KWP, HMAC_BY_HASH } from './mechanisms';
import { IS_DOWN, ProbeKit, SECRET } from './probe-kit';
import { ephemeralDataKeyTemplate, kekTemplate } from './templates';

/**
 * Capability discovery (capabilities.ts): the mechanism list, then a known-answer test of each
 * mechanism QKMS relies on, with throwaway objects. Keys with known values are session objects
 * made with C_CreateObject, compared with node:crypto's answer for the same inputs; the one token
 * object (the probe of a real KEK template) is destroyed at once, and one left by a crash in between
 * is destroyed by label on the next start.
 */
export const PROBE_LABEL = 'qkms-capability-probe';


export function discoverCapabilities(p11: pkcs11js.PKCS11, slot: pkcs11js.Handle, info: pkcs11js.TokenInfo, s: pkcs11js.Handle): TokenCapabilities {
  const listed = new Set(p11.C_GetMechanismList(slot));
  const lib = p11.C_GetInfo();
  const probe = new Prober(p11, s, listed);
  const allowedMechanismsAttribute = probe.tokenKek();
  probe.random();
  const genericSecretBytes = probe.genericSecrets();
  probe.symmetric();
  const rsa = probeRsa(probe, listed.has(pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN) ? p11.C_GetMechanismInfo(slot, pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN) : undefined);
  probeEc(probe);
  return {
    token: { manufacturer: info.manufacturerID.trim(), model: info.model.trim(), library: `${lib.libraryDescription.trim()} ${lib.libraryVersion.major}.${lib.libraryVersion.minor}` },
    checks: probe.checks,
    kwpMechanism: probe.kwpMechanism,
    genericSecretBytes,
    rsaBits: rsa.bits,
    allowedMechanismsAttribute,
    rsaOaepSha256: rsa.oaepSha256,
  };
}

/** Known data for the known-answer tests: nothing secret, nothing kept. */
const KEY = Buffer.alloc(32, 0x4b);
const IV12 = Buffer.alloc(12, 0x01);
const IV16 = Buffer.alloc(16, 0x02);
const AAD = Buffer.from('qkms probe aad');
const RFC5649_IV = Buffer.from('a65959a6', 'hex');
/** Generic-secret lengths tried: the range found is the smallest to the largest that work. */
const SECRET_LENGTHS = [1, 8, 16, 32, 64, 256, 512, 1024];

/** The secret-key probes; the key-pair ones are in key-pair-probes.ts. */
class Prober extends ProbeKit {
  kwpMechanism?: number;

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
        // Its own process destroyed it meanwhile (SoftHSM2 then answers CKR_FUNCTION_FAILED, the
        // file being gone): best effort, a leftover still there is destroyed at the next start.
        if (err instanceof HsmError && IS_DOWN.includes(err.kind)) throw err;
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
          const h = this.p11.C_GenerateKey(this.s, { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN }, ephemeralDataKeyTemplate(bytes));
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
            const back = this.p11.C_UnwrapKey(this.s, { mechanism }, kek, wrapped, ephemeralDataKeyTemplate());
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
    const secret = this.p11.C_CreateObject(this.s, [...ephemeralDataKeyTemplate(), { type: pkcs11js.CKA_VALUE, value: SECRET }]);
    try {
      return body(secret);
    } finally {
      this.p11.C_DestroyObject(this.s, secret);
    }
  }
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
