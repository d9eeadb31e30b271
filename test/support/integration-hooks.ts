import { Pkcs11Hsm } from '../../src/hsm/pkcs11/pkcs11-hsm';
import { HSM_PROFILES } from '../../src/hsm/profiles';
import { stopSharedPostgres } from './postgres';
import { createTestToken, removeTestToken, type TestToken } from './softhsm-token';

/**
 * Root hooks: one SoftHSM2 token per run, in a temp dir, and one Pkcs11Hsm over it (PKCS#11 is
 * initialised once per process). Tests reach both through `integration()`. The PostgreSQL cluster
 * some suites start (test/support/postgres.ts) is stopped at the end too.
 */
let state: { token: TestToken; hsm: Pkcs11Hsm } | undefined;

export function integration(): { token: TestToken; hsm: Pkcs11Hsm } {
  if (!state) throw new Error('integration root hook did not run');
  return state;
}

export const mochaHooks = {
  async beforeAll(this: Mocha.Context) {
    this.timeout(30000);
    const token = createTestToken();
    const hsm = await Pkcs11Hsm.open({ modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, sessions: 4, integrityErrors: HSM_PROFILES.softhsm2.integrityErrors, staleIndexAfterOwnWrite: HSM_PROFILES.softhsm2.staleIndexAfterOwnWrite });
    state = { token, hsm };
  },
  async afterAll() {
    stopSharedPostgres();
    if (!state) return;
    await state.hsm.close();
    removeTestToken(state.token);
    state = undefined;
  },
};
