import * as pkcs11js from 'pkcs11js';
import { HsmError } from '../hsm-error';
import { initialize } from './token-access';

// CK_SLOT_INFO flags (PKCS#11 v2.40 §3.2), which pkcs11js does not export.
const CKF_TOKEN_PRESENT = 0x1;
const CKF_HW_SLOT = 0x4;

export interface SlotReport {
  slotId: string;
  description: string;
  manufacturer: string;
  hasToken: boolean;
  isHardware: boolean;
  token?: {
    label: string;
    manufacturer: string;
    model: string;
    serialNumber: string;
    isInitialized: boolean;
    isUserPinInitialized: boolean;
    isLoginRequired: boolean;
    hasRng: boolean;
    isWriteProtected: boolean;
    /** null: the token does not say (CK_UNAVAILABLE_INFORMATION); max 0 means no limit. */
    sessions: { open: number | null; max: number | null };
    firmwareVersion: string;
  };
}

/**
 * Every slot of a PKCS#11 module and the token in it (C_GetSlotList, C_GetSlotInfo,
 * C_GetTokenInfo): no session, no PIN. `initArgs` is QKMS_PKCS11_INIT_ARGS (token-access.ts). The module is loaded, initialised and finalised here; run
 * it in a process that has not loaded the module otherwise.
 */
export function listSlots(modulePath: string, initArgs?: string): SlotReport[] {
  const p11 = new pkcs11js.PKCS11();
  try {
    p11.load(modulePath);
  } catch (err) {
    throw new HsmError('config', 'C_Load', undefined, { cause: new Error(`cannot load the PKCS#11 module ${modulePath}: ${(err as Error).message}`) });
  }
  initialize(p11, initArgs);
  try {
    return p11.C_GetSlotList(false).map((slot) => slotReport(p11, slot));
  } finally {
    p11.C_Finalize();
    p11.close();
  }
}

function slotReport(p11: pkcs11js.PKCS11, slot: pkcs11js.Handle): SlotReport {
  const info = p11.C_GetSlotInfo(slot);
  const hasToken = (info.flags & CKF_TOKEN_PRESENT) !== 0;
  const report: SlotReport = {
    slotId: BigInt(`0x${Buffer.from(slot).reverse().toString('hex') || '0'}`).toString(),
    description: info.slotDescription.trim(),
    manufacturer: info.manufacturerID.trim(),
    hasToken,
    isHardware: (info.flags & CKF_HW_SLOT) !== 0,
  };
  if (!hasToken) return report;
  const t = p11.C_GetTokenInfo(slot);
  const has = (flag: number) => (t.flags & flag) !== 0;
  report.token = {
    label: t.label.trim(),
    manufacturer: t.manufacturerID.trim(),
    model: t.model.trim(),
    serialNumber: t.serialNumber.trim(),
    isInitialized: has(pkcs11js.CKF_TOKEN_INITIALIZED),
    isUserPinInitialized: has(pkcs11js.CKF_USER_PIN_INITIALIZED),
    isLoginRequired: has(pkcs11js.CKF_LOGIN_REQUIRED),
    hasRng: has(pkcs11js.CKF_RNG),
    isWriteProtected: has(pkcs11js.CKF_WRITE_PROTECTED),
    sessions: { open: known(t.sessionCount), max: known(t.maxSessionCount) },
    firmwareVersion: `${t.firmwareVersion.major}.${t.firmwareVersion.minor}`,
  };
  return report;
}

/** CK_UNAVAILABLE_INFORMATION is ~0 of a CK_ULONG. */
function known(value: number): number | null {
  return value === 0xffffffff || value >= Number.MAX_SAFE_INTEGER ? null : value;
}
