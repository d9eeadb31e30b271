import * as pkcs11js from 'pkcs11js';
import { HsmError } from '../hsm-error';
import { ckrName } from './ckr-table';
import { call } from './instrumented-module';

/**
 * The single steps of reaching a token, each with the CKR codes it tolerates: initialise the
 * module, find the token by label, open a session, log in, and probe whether the token answers.
 */

export type Session = pkcs11js.Handle;

/** PKCS#11 v2.40 §5.6 session state of a read/write session logged in as the normal user (pkcs11js exports no CKS_*). */
export const CKS_RW_USER_FUNCTIONS = 3;

/**
 * C_Initialize with OS locking. `libraryParameters` (QKMS_PKCS11_INIT_ARGS) is the NSS-style init
 * string some modules need (NSS softoken: `configdir=…`); pkcs11js then passes it where the standard
 * struct has pReserved, which a strict module (SoftHSM2) refuses with CKR_ARGUMENTS_BAD.
 */
export function initialize(p11: pkcs11js.PKCS11, libraryParameters?: string): void {
  try {
    // Without CKF_OS_LOCKING_OK SoftHSM2 disables all its locks (pkcs11-and-clients.md §1.4).
    // pkcs11js copies the string into a buffer one byte short and so drops its last character
    // (pkcs11.cpp C_Initialize: napi_get_value_string_utf8 with bufsize = length): a trailing
    // space is what it drops, and init-string parsers skip it.
    p11.C_Initialize(libraryParameters === undefined ? { flags: pkcs11js.CKF_OS_LOCKING_OK } : { flags: pkcs11js.CKF_OS_LOCKING_OK, libraryParameters: `${libraryParameters} ` });
  } catch (err) {
    if (ckrName(err) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') throw new HsmError('device', 'C_Initialize', ckrName(err), { cause: err });
  }
}

export function findSlotByLabel(p11: pkcs11js.PKCS11, label: string): pkcs11js.Handle {
  return findToken(p11, label).slot;
}

/** The slot of the token with this label, and its C_GetTokenInfo. */
export function findToken(p11: pkcs11js.PKCS11, label: string): { slot: pkcs11js.Handle; info: pkcs11js.TokenInfo } {
  // By label, never by index: SoftHSM2 renumbers slots when a token is initialised.
  for (const slot of call('C_GetSlotList', () => p11.C_GetSlotList(true))) {
    let info: pkcs11js.TokenInfo;
    try {
      info = p11.C_GetTokenInfo(slot);
    } catch {
      continue; // a token another process is writing (SoftHSM2): not listed, see Connection.connect
    }
    if (info.label.trim() === label) return { slot, info };
  }
  throw new TokenNotListed(label);
}

/** The token is not in the slot list: a wrong label, or (SoftHSM2) a token another process was writing at C_Initialize. */
export class TokenNotListed extends HsmError {
  constructor(label: string) {
    super('config', 'C_GetSlotList', undefined, { cause: new Error(`no token labelled '${label}'`) });
  }
}

export function openSession(p11: pkcs11js.PKCS11, slot: pkcs11js.Handle): Session {
  return call('C_OpenSession', () => p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION));
}

export function closeSessions(p11: pkcs11js.PKCS11, sessions: Session[]): void {
  for (const s of sessions) {
    try {
      p11.C_CloseSession(s);
    } catch {
      // closing anyway
    }
  }
}

export function login(p11: pkcs11js.PKCS11, session: Session, pin: string): void {
  try {
    p11.C_Login(session, pkcs11js.CKU_USER, pin);
  } catch (err) {
    if (ckrName(err) !== 'CKR_USER_ALREADY_LOGGED_IN') throw new HsmError('auth', 'C_Login', ckrName(err), { cause: err });
  }
}

/**
 * Does the token answer, apart from whatever session a call just failed on: C_GenerateRandom on a
 * session of its own, opened and closed here. Throws the failing call's HsmError when it does not.
 * (Not C_GetTokenInfo: SoftHSM2 answers it with CKR_GENERAL_ERROR while another process rewrites
 * the token's flags, which would open the circuit for a token that is fine.)
 */
export function probeToken(p11: pkcs11js.PKCS11, slot: pkcs11js.Handle): void {
  const session = openSession(p11, slot);
  try {
    call('C_GenerateRandom', () => p11.C_GenerateRandom(session, Buffer.alloc(1)));
  } finally {
    closeSessions(p11, [session]);
  }
}
