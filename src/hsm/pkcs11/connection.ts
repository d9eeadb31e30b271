import type * as pkcs11js from 'pkcs11js';
import type { HsmHealth } from '../hsm';
import { HsmError } from '../hsm-error';
import { ckrName } from './ckr-table';
import { call } from './instrumented-module';
import type { Pkcs11Options, RecycleReason } from './pkcs11-options';
import { SessionPool } from './session-pool';
import { closeSessions, CKS_RW_USER_FUNCTIONS, findToken, initialize, login, openSession, probeToken, TokenNotListed, type Session } from './token-access';

const RECOVERY_INTERVAL_MS = 1000;
/** connect's attempts against a token other processes are writing: 8, 25 ms more between each, ~0.9 s in all. */
const CONNECT_ATTEMPTS = 8;
/** C_Login answers after which the PIN is not offered again (Connection.login). */
const PIN_REFUSALS = ['CKR_PIN_INCORRECT', 'CKR_PIN_LOCKED', 'CKR_PIN_EXPIRED', 'CKR_PIN_INVALID', 'CKR_PIN_LEN_RANGE'];

/** Did `fn` fail with a device-class code while the probe found the token answering (Connection)? */
export function isDeviceFaultOfTokenThatAnswers(err: HsmError, fn: string): boolean {
  return err.kind === 'internal' && err.fn === fn && err.cause instanceof HsmError && err.cause.kind === 'device';
}
/** How long close() waits for key-pair generations in flight (the HSM thread gives close 2 s in all). */
const CLOSE_WAIT_MS = 1500;

/**
 * The live connection to the token: the pool of logged-in sessions, and the healing around every
 * call (STYLE.md habit 6). A broken session is replaced and the call retried once; a lost login is
 * redone and the call retried once. A device-class failure is checked before it is believed: a
 * probe (token-access.ts probeToken) asks the token on a session of its own. Only when the probe
 * fails too does the circuit breaker open — calls fail fast with HsmError 'device'
 * (KeyUnavailableException) while a timer re-initialises every second until the token answers
 * again. When the probe passes, the token misbehaved on that one call (a vendor's stale error code
 * for a client's bad input, say): the call fails as 'internal' and everyone else is served on.
 * Anything a client sends can only reach that second branch.
 */
export class Connection {
  slot!: pkcs11js.Handle;
  /** C_GetTokenInfo as read at the last (re)connect: label, model and manufacturer do not change. */
  tokenInfo!: pkcs11js.TokenInfo;
  private pool!: SessionPool<Session>;
  /** Circuit breaker: while open, calls fail fast and a timer tries to reconnect. */
  private recovery?: NodeJS.Timeout;
  /** Session objects created since the module was (re-)initialised. */
  private sessionObjects = 0;
  /** Calls running on the libuv pool (key-pair generation). */
  private asyncInFlight = 0;
  private mayFinalize: boolean;
  /** Token objects this process made or destroyed since the module was (re-)initialised. */
  private tokenWrites = 0;
  /**
   * A re-initialisation under way (recycle, reconnect). connect waits between its attempts, and
   * the module is finalised meanwhile: calls wait for it instead of using the old sessions (which
   * fail as a device fault and would open the circuit), and a second one joins it instead of
   * finalising the module under the first.
   */
  private reconnecting?: Promise<void>;
  /** The token refused the PIN once: never offered again in this process (see login). */
  private pinRefused?: HsmError;

  constructor(
    private readonly p11: pkcs11js.PKCS11,
    private readonly options: Pkcs11Options,
    /** Told after every (re)connect: handles from before it are void. */
    private readonly onConnected: () => void,
  ) {
    this.mayFinalize = options.mayFinalize ?? true;
  }

  /**
   * Initialise, find the token by label, open the sessions, log in once. SoftHSM2 shared with other
   * processes fails this now and then: it reads its tokens at C_Initialize and leaves out one that
   * another process is writing (each C_Login rewrites the token's flags), and C_GetTokenInfo and
   * C_Login read the same file and answer CKR_GENERAL_ERROR meanwhile (docs/hsm/softhsm2.md;
   * measured: most initialisations of four processes using one token). So those two failures are
   * retried after a fresh C_Initialize, a few times over about a second, before they are believed.
   * A wrong PIN never is (that would count against the PIN).
   */
  async connect(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return this.connectOnce();
      } catch (err) {
        const isTransient = err instanceof TokenNotListed || (err instanceof HsmError && err.ckr === 'CKR_GENERAL_ERROR');
        if (!isTransient || attempt >= CONNECT_ATTEMPTS || !this.mayFinalize) throw err;
      }
      try {
        this.p11.C_Finalize();
      } catch {
        // not initialised: the next attempt initialises
      }
      await new Promise((r) => setTimeout(r, 25 * attempt));
    }
  }

  private connectOnce(): void {
    this.sessionObjects = 0;
    this.tokenWrites = 0;
    initialize(this.p11, this.options.initArgs);
    const { slot, info } = findToken(this.p11, this.options.tokenLabel);
    const sessions: Session[] = [];
    try {
      while (sessions.length < this.options.sessions) sessions.push(openSession(this.p11, slot));
      this.login(sessions[0]);
    } catch (err) {
      closeSessions(this.p11, sessions); // a reconnect without C_Finalize would leave them open in the module
      throw err;
    }
    this.slot = slot;
    this.tokenInfo = info;
    this.pool = new SessionPool<Session>(sessions, (broken) => {
      closeSessions(this.p11, [broken]);
      return openSession(this.p11, slot);
    });
    this.onConnected();
  }

  /**
   * C_Login with the configured PIN, unless the token has refused it before: every wrong attempt
   * counts towards the token's lockout (a few on network HSMs, and then only the security officer
   * can unlock the partition), so after a refusal — the PIN changed on the HSM, say — reconnects
   * and re-logins fail at once, naming the refusal, until the gateway restarts with the new PIN.
   */
  private login(session: Session): void {
    if (this.pinRefused) throw this.pinRefused;
    try {
      login(this.p11, session, this.options.pin);
    } catch (err) {
      if (err instanceof HsmError && PIN_REFUSALS.includes(err.ckr ?? '')) this.pinRefused = err;
      throw err;
    }
  }

  get isUp(): boolean {
    return this.recovery === undefined;
  }

  get sessionStats() {
    return this.pool.stats;
  }

  setMayFinalize(allowed: boolean): void {
    this.mayFinalize = allowed;
  }

  /** Counts a session object made (a recycle is due after recycleAfterSessionObjects of them). */
  sessionObjectCreated(handle: pkcs11js.Handle): pkcs11js.Handle {
    this.sessionObjects++;
    return handle;
  }

  /** Counts a token object made or destroyed by this process (see refreshTokenIndex). */
  tokenWritten(): void {
    this.tokenWrites++;
  }

  /**
   * For a search by id that found nothing: on a token whose index goes stale after this process's
   * own writes (staleIndexAfterOwnWrite), re-initialise the module, which re-reads the token's
   * objects, if this process wrote since the last initialisation. Returns whether the search may
   * find more now. Without a write of ours in between the module's index is current (it re-reads
   * when another process writes): a key that is really missing costs one search, not a recycle.
   * When the index may be stale but cannot be re-read now (another thread may be inside the module,
   * a key pair is being generated on the libuv pool, the circuit is open), "nothing found" cannot be
   * believed: it throws (KeyUnavailableException; a deletion or rollback is retried) rather than let
   * a deletion take an object it does not see for gone and leave the key's material on the token.
   */
  async refreshTokenIndex(): Promise<boolean> {
    if (!this.options.staleIndexAfterOwnWrite) return false;
    if (this.reconnecting) {
      await this.reconnecting; // the index is being re-read (and the search may have been before it)
      return true;
    }
    if (this.tokenWrites === 0) return false;
    if (!this.mayFinalize || this.asyncInFlight > 0 || !this.isUp) {
      throw new HsmError('key', 'C_FindObjects', 'CKR_OBJECT_HANDLE_INVALID', {
        cause: new Error('no token object found, but this process cannot re-read the token objects now (its list may miss those other processes made); try again'),
      });
    }
    await this.recycle('token-index');
    return true;
  }

  /** Runs an *Async call on the libuv pool, known to recycle, reconnect and close, which wait for it. */
  async offThread<T>(body: () => Promise<T>): Promise<T> {
    this.asyncInFlight++;
    try {
      return await body();
    } finally {
      this.asyncInFlight--;
    }
  }

  /**
   * Runs body on a pooled session, healing as the class comment says. `label` names the work for
   * errors that are not a C_* call's own (each of those names its function: instrumented-module.ts).
   */
  async withSession<T>(label: string, body: (s: Session) => T, isRetry = false): Promise<T> {
    while (this.reconnecting) await this.reconnecting.catch(() => undefined);
    if (!this.isUp) throw new HsmError('device', label, 'CKR_DEVICE_REMOVED');
    const recycleAfter = this.options.recycleAfterSessionObjects;
    // Postponed while another thread may be inside the module (an abandoned HSM thread, a key pair
    // being generated on the libuv pool): C_Finalize would pull the module from under it.
    if (recycleAfter !== undefined && this.sessionObjects >= recycleAfter && this.mayFinalize && this.asyncInFlight === 0) await this.recycle('session-objects');
    try {
      // A session that saw a device-class failure is replaced too: if the token is fine, the
      // fault may be that session's; if it is down, the pool keeps it (nothing to reopen).
      return await this.pool.use((s) => call(label, () => body(s)), (err) => err instanceof HsmError && (err.kind === 'session' || err.kind === 'device'));
    } catch (err) {
      if (!(err instanceof HsmError)) throw err;
      if (err.kind === 'device') throw this.confirmDeviceFailure(err);
      if (!isRetry && err.kind === 'session') return this.withSession(label, body, true);
      if (!isRetry && err.ckr === 'CKR_USER_NOT_LOGGED_IN') {
        await this.pool.use((s) => this.login(s), () => false);
        return this.withSession(label, body, true);
      }
      throw err;
    }
  }

  /**
   * withSession for a call that makes token objects with a ref's id: never repeated. After a
   * session error its outcome is unknown (the token may have made the object and lost the answer),
   * and a second object with the id would make the key ambiguous; the caller's rollback destroys
   * whatever carries the id instead (key-material.ts).
   */
  async creating<T>(label: string, body: (s: Session) => T): Promise<T> {
    this.tokenWritten(); // counted before: a failed call may still have made the object
    return this.withSession(label, body, true);
  }

  /**
   * A call failed with a device-class code: the token is down only if the probe says so too. Returns
   * the error to throw: the device error (the circuit now open), or an 'internal' one caused by it.
   */
  private confirmDeviceFailure(err: HsmError): HsmError {
    if (!this.isUp) return err;
    try {
      probeToken(this.p11, this.slot);
    } catch (probeErr) {
      this.openCircuit(err, probeErr);
      return err;
    }
    return new HsmError('internal', err.fn, err.ckr, { cause: err });
  }

  async health(): Promise<HsmHealth> {
    if (!this.isUp) return { isUp: false, detail: 'token unavailable; reconnecting' };
    try {
      const info = this.tokenInfo;
      // proves a pooled session works
      await this.withSession('C_GenerateRandom', (s) => this.p11.C_GenerateRandom(s, Buffer.alloc(1)));
      if (!(await this.isLoggedIn())) {
        // A lost login is redone here too, so that an idle gateway becomes ready again.
        await this.pool.use((s) => this.login(s), () => false);
        if (!(await this.isLoggedIn())) return { isUp: false, detail: 'the token session is not logged in' };
      }
      return { isUp: true, detail: `token '${info.label.trim()}' (${info.model.trim()}) answers, logged in` };
    } catch (err) {
      return { isUp: false, detail: err instanceof Error ? err.message : String(err) };
    }
  }

  /** The login is per token and application, so one pooled session's state speaks for all. */
  private async isLoggedIn(): Promise<boolean> {
    return (await this.withSession('C_GetSessionInfo', (s) => this.p11.C_GetSessionInfo(s).state)) === CKS_RW_USER_FUNCTIONS;
  }

  /**
   * C_Finalize and connect again, between calls: every call body but key-pair generation is
   * synchronous (and that one is waited for), so none is in the middle of a PKCS#11 call here.
   * A token that does not come back opens the circuit.
   */
  private recycle(reason: RecycleReason): Promise<void> {
    return this.alone(() => this.recycleNow(reason));
  }

  /** Runs a re-initialisation unless one is under way: then waits for that one (see reconnecting). */
  private alone(work: () => Promise<void>): Promise<void> {
    this.reconnecting ??= work().finally(() => (this.reconnecting = undefined));
    return this.reconnecting;
  }

  private async recycleNow(reason: RecycleReason): Promise<void> {
    const objects = this.sessionObjects;
    this.sessionObjects = 0;
    const started = performance.now();
    try {
      this.p11.C_Finalize();
      await this.connect();
    } catch (err) {
      const cause = err instanceof HsmError ? err : new HsmError('device', 'C_Initialize', ckrName(err), { cause: err });
      this.openCircuit(cause);
      throw cause;
    }
    this.options.onRecycle?.(reason, objects, performance.now() - started);
  }

  private openCircuit(cause: HsmError, probeErr?: unknown): void {
    if (!this.isUp) return;
    const probe = probeErr instanceof Error ? ` (the probe failed too: ${probeErr.message})` : '';
    this.options.onStateChange?.(false, `${cause.message}${probe}`);
    this.recovery = setInterval(() => void this.tryReconnect(), RECOVERY_INTERVAL_MS);
    this.recovery.unref();
  }

  /**
   * One attempt to heal the open circuit. Normally C_Finalize and a fresh C_Initialize, which
   * resets whatever state the library was left in. While another thread may be inside the module
   * (mayFinalize false) it only closes this instance's sessions and opens new ones and logs in
   * again; a library that needs the reset heals once that thread has left. Never under a key-pair
   * generation on the libuv pool: it fails or ends soon on a down token, and one that never settles
   * is the HSM thread watchdog's to abandon.
   */
  private async tryReconnect(): Promise<void> {
    if (this.asyncInFlight > 0 || this.reconnecting) return;
    await this.alone(() => this.reconnectNow());
  }

  private async reconnectNow(): Promise<void> {
    const isFinalizing = this.mayFinalize;
    if (isFinalizing) {
      try {
        this.p11.C_Finalize();
      } catch {
        // not initialised, or already finalised: either way start afresh
      }
    } else {
      closeSessions(this.p11, this.pool.drain());
    }
    try {
      await this.connect();
      clearInterval(this.recovery);
      this.recovery = undefined;
      this.options.onStateChange?.(true, isFinalizing ? 'token answers again' : 'token answers again (sessions reopened without C_Finalize: another thread may be inside the module)');
    } catch {
      // still down; the next tick tries again
    }
  }

  /**
   * Closes this instance's sessions, then finalises and unloads the module unless another thread
   * may be inside it: an abandoned HSM thread (mayFinalize), or a key-pair generation still on the
   * libuv pool after a bounded wait. The process ends soon after anyway; pulling the module from
   * under a thread in a call is undefined behaviour.
   */
  async close(): Promise<void> {
    clearInterval(this.recovery);
    await this.reconnecting?.catch(() => undefined);
    // Let key-pair generations on the libuv pool end first (bounded: shutdown goes on).
    for (const deadline = performance.now() + CLOSE_WAIT_MS; this.asyncInFlight > 0 && performance.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 20));
    }
    closeSessions(this.p11, this.pool.drain());
    if (!this.mayFinalize || this.asyncInFlight > 0) return;
    try {
      this.p11.C_Finalize();
    } finally {
      this.p11.close();
    }
  }
}
