import * as pkcs11js from 'pkcs11js';
import type { CapabilityCheck, CapabilityName } from '../capabilities';
import { HsmError } from '../hsm-error';
import { ckrName } from './ckr-table';
import { mechanismName } from './mechanisms';

/** Error kinds that say the token is unavailable, not what it can do. */
export const IS_DOWN: readonly string[] = ['device', 'session', 'auth'];

/** Known data for the known-answer tests: nothing secret, nothing kept. 20 bytes: not a multiple of 8, so KWP pads. */
export const SECRET = Buffer.from('0123456789abcdefghij');

/** What every probe needs: the module, one session, the mechanism list, and where verdicts go. */
export class ProbeKit {
  readonly checks = {} as Record<CapabilityName, CapabilityCheck>;

  constructor(
    readonly p11: pkcs11js.PKCS11,
    readonly s: pkcs11js.Handle,
    readonly listed: Set<number>,
  ) {}

  /** One check: not listed, or the body's verdict, or the CKR the token refused it with. */
  check(name: CapabilityName, mechanism: number | string, body: () => string | true): boolean {
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
}
