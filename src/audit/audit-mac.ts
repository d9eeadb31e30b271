import type { Hsm } from '../hsm/hsm';
import { AUDIT_MAC_KEY } from './audit-record';

/** HMACs of the audit trail (batch headers, the anchor, legacy checkpoints), made and checked in the HSM. */
export interface AuditMac {
  sign(message: Buffer): Promise<Buffer>;
  verify(message: Buffer, mac: Buffer): Promise<boolean>;
}

/** The only place the audit trail names its HSM key. */
export function auditMac(hsm: Hsm): AuditMac {
  return {
    sign: (message) => hsm.hmacSign(AUDIT_MAC_KEY, message),
    verify: (message, mac) => hsm.hmacVerify(AUDIT_MAC_KEY, message, mac),
  };
}
