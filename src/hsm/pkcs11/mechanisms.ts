import * as pkcs11js from 'pkcs11js';
import { GCM_TAG_BYTES } from '../hsm';

export const KWP: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD }; // SoftHSM rejects any parameter
export const HMAC_SHA256: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_SHA256_HMAC };
export const AES_KEY_GEN: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_AES_KEY_GEN };
export const GENERIC_SECRET_KEY_GEN: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN };

/**
 * CK_GCM_PARAMS via CK_PARAMS_GCM (25), which fills ulIvBits (type 3 leaves it uninitialised) and an
 * explicit 128-bit tag (pkcs11js defaults tagBits to 0 = no tag). pkcs11-and-clients.md §1.2.
 */
export function aesGcm(iv: Buffer, aad: Buffer): pkcs11js.Mechanism {
  return {
    mechanism: pkcs11js.CKM_AES_GCM,
    parameter: { type: pkcs11js.CK_PARAMS_GCM, iv, ivBits: iv.length * 8, aad, tagBits: GCM_TAG_BYTES * 8 } as pkcs11js.GcmParams,
  };
}
