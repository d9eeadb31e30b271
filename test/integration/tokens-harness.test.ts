import assert from 'node:assert/strict';
import * as pkcs11js from 'pkcs11js';
import { isSkipped, startToken, TOKEN_KINDS, type TokenUnderTest } from '../support/tokens';

/** The token harness itself: each extra token starts fresh, opens with pkcs11js as any client would, and stops. */
describe('Extra PKCS#11 tokens for the suite', () => {
  for (const kind of TOKEN_KINDS) {
    describe(kind, () => {
      let token: TokenUnderTest | undefined;
      const saved: Record<string, string | undefined> = {};

      before(async function () {
        this.timeout(60_000);
        const started = await startToken(kind);
        if (isSkipped(started)) {
          console.log(`      skipped: ${started.skip}`);
          this.skip();
        }
        token = started;
        // The module reads its environment at C_Initialize, in this process.
        for (const [name, value] of Object.entries(token.env)) {
          saved[name] = process.env[name];
          process.env[name] = value;
        }
      });

      after(async () => {
        await token?.stop();
        for (const [name, value] of Object.entries(saved)) {
          if (value === undefined) delete process.env[name];
          else process.env[name] = value;
        }
      });

      it('opens by label, logs in with the PIN and generates random bytes', function () {
        if (!token) return this.skip();
        const p11 = new pkcs11js.PKCS11();
        p11.load(token.modulePath);
        p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK, ...(token.initArgs ? { libraryParameters: token.initArgs } : {}) });
        try {
          const slots = p11.C_GetSlotList(true).filter((s) => p11.C_GetTokenInfo(s).label.trimEnd() === token?.tokenLabel);
          assert.equal(slots.length, 1, `exactly one token labelled ${token.tokenLabel}`);
          const session = p11.C_OpenSession(slots[0], pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
          p11.C_Login(session, pkcs11js.CKU_USER, token.pin);
          const random = p11.C_GenerateRandom(session, Buffer.alloc(16));
          assert.equal(random.length, 16);
          assert.notDeepEqual(random, Buffer.alloc(16));
          p11.C_Logout(session);
          p11.C_CloseSession(session);
        } finally {
          p11.C_Finalize();
        }
      });

      it('starts a second, independent token after the first', async function () {
        if (!token) return this.skip();
        if (kind === 'opencryptoki') return this.skip(); // one machine-wide soft token, held by the first start
        const second = await startToken(kind);
        assert.ok(!isSkipped(second));
        try {
          assert.notEqual(second.tokenLabel, token.tokenLabel);
        } finally {
          await second.stop();
        }
      });
    });
  }
});
