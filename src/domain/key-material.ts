import type { Hsm, KeyPairUsage } from '../hsm/hsm';
import { keyObjectLabels } from './key-repository';
import { SUPPORTED_SPECS, type KeySpec, type KeyUsage } from './key-spec';

/**
 * Generates one material version of a key in the HSM, whatever its spec: an AES KEK and an HMAC
 * key (symmetric), one HMAC key (HMAC_*), or a key pair (RSA_*, ECC_*). Anything made before a
 * failure is destroyed, so a failed CreateKey or rotation leaves no orphan on the token.
 */
export async function generateKeyMaterial(hsm: Hsm, keyId: string, version: number, key: { keySpec: KeySpec; keyUsage: KeyUsage }): Promise<void> {
  const labels = keyObjectLabels(keyId, version, key.keySpec);
  const material = SUPPORTED_SPECS[key.keySpec].material;
  try {
    if (material.family === 'SYMMETRIC') {
      await hsm.generateKek(labels.kek);
      await hsm.generateMacKey(labels.mac);
    } else if (material.family === 'HMAC') {
      await hsm.generateMacKey(labels.hmac, { hash: material.hash, bytes: material.bytes });
    } else {
      await hsm.generateKeyPair({ private: labels.private, public: labels.public }, material, key.keyUsage as KeyPairUsage);
    }
  } catch (err) {
    await destroyKeyMaterial(hsm, keyId, version, key.keySpec).catch(() => undefined);
    throw err;
  }
}

/** Destroys the token objects of one material version (a missing object is not an error). */
export async function destroyKeyMaterial(hsm: Hsm, keyId: string, version: number, keySpec: KeySpec): Promise<void> {
  const results = await Promise.allSettled(Object.values(keyObjectLabels(keyId, version, keySpec)).map((label) => hsm.destroyKey(label)));
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
}
