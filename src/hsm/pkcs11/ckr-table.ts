import { HsmError, type HsmErrorKind } from '../hsm-error';
import type { IntegrityErrors } from '../profiles';

/**
 * CKR names -> kind (see hsm-error.ts). Matched on the name pkcs11js puts in Pkcs11Error.message /
 * derived from err.code, never on free text (STYLE.md habit 7).
 */
const TABLE: Record<string, HsmErrorKind> = {
  // The standard answers to data that does not verify. A token that answers otherwise (SoftHSM2
  // 2.6.1: CKR_GENERAL_ERROR) says so in its profile (profiles.ts integrityErrors), never here:
  // CKR_GENERAL_ERROR is a device fault on every other token, and must stay a retryable 5xx.
  CKR_ENCRYPTED_DATA_INVALID: 'integrity',
  CKR_ENCRYPTED_DATA_LEN_RANGE: 'integrity',
  CKR_WRAPPED_KEY_INVALID: 'integrity',
  CKR_WRAPPED_KEY_LEN_RANGE: 'integrity',
  CKR_SIGNATURE_INVALID: 'integrity',
  CKR_SIGNATURE_LEN_RANGE: 'integrity',
  CKR_OBJECT_HANDLE_INVALID: 'key',
  CKR_KEY_HANDLE_INVALID: 'key',
  CKR_WRAPPING_KEY_HANDLE_INVALID: 'key',
  CKR_UNWRAPPING_KEY_HANDLE_INVALID: 'key',
  CKR_SESSION_HANDLE_INVALID: 'session',
  CKR_SESSION_CLOSED: 'session',
  CKR_OPERATION_ACTIVE: 'session',
  CKR_DEVICE_ERROR: 'device',
  CKR_DEVICE_REMOVED: 'device',
  CKR_DEVICE_MEMORY: 'device',
  CKR_TOKEN_NOT_PRESENT: 'device',
  CKR_TOKEN_NOT_RECOGNIZED: 'device',
  CKR_CRYPTOKI_NOT_INITIALIZED: 'device',
  CKR_SLOT_ID_INVALID: 'device',
  CKR_USER_NOT_LOGGED_IN: 'auth',
  CKR_PIN_INCORRECT: 'auth',
  CKR_PIN_LOCKED: 'auth',
  // The token cannot do what was asked (a mechanism, a parameter, a key shape): capability discovery
  // finds most of these at start-up; the rest (a curve, a key size, a template the token refuses)
  // surface here, at the request, as UnsupportedOperationException.
  CKR_MECHANISM_INVALID: 'unsupported',
  CKR_MECHANISM_PARAM_INVALID: 'unsupported',
  CKR_FUNCTION_NOT_SUPPORTED: 'unsupported',
  CKR_TEMPLATE_INCONSISTENT: 'unsupported',
  CKR_ATTRIBUTE_TYPE_INVALID: 'unsupported',
  CKR_ATTRIBUTE_VALUE_INVALID: 'unsupported',
  CKR_DOMAIN_PARAMS_INVALID: 'unsupported',
  CKR_CURVE_NOT_SUPPORTED: 'unsupported',
  CKR_KEY_SIZE_RANGE: 'unsupported',
  CKR_TEMPLATE_INCOMPLETE: 'config',
  CKR_ATTRIBUTE_READ_ONLY: 'config',
  CKR_ATTRIBUTE_SENSITIVE: 'config',
  CKR_KEY_TYPE_INCONSISTENT: 'config',
  CKR_KEY_FUNCTION_NOT_PERMITTED: 'config',
  CKR_KEY_UNEXTRACTABLE: 'config',
};

/** The kind of a CKR code, returned by `fn`, on a token with these `integrityErrors`. */
export function classifyCkr(ckrName: string | undefined, fn?: string, integrityErrors?: IntegrityErrors): HsmErrorKind {
  if (ckrName && fn && integrityErrors?.[fn]?.includes(ckrName)) return 'integrity';
  return (ckrName && TABLE[ckrName]) || 'internal';
}

/** The CKR names this table knows, for its unit test. */
export const KNOWN_CKR = Object.keys(TABLE);

/** The CKR name of a pkcs11js Pkcs11Error (message "CKR_NAME"), an injected fault ("CKR_NAME:rv") or an HsmError. */
export function ckrName(err: unknown): string | undefined {
  if (err instanceof HsmError) return err.ckr;
  if (err && typeof err === 'object' && 'message' in err && typeof err.message === 'string') {
    const m = /^(CKR_[A-Z_0-9]+)/.exec(err.message);
    return m?.[1];
  }
  return undefined;
}
