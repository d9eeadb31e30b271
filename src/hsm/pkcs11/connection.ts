import type * as pkcs11js from 'pkcs11js';
import type { HsmHealth } from '../hsm';
import { HsmError } from '../hsm-error';
import { ckrName } from './ckr-table';
import { call } from './instrumented-module';
import { ModuleLock, type ExclusiveOutcome } from './module-lock';
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
 * How long a re-initialisation waits for the other threads to leave the module (ModuleLock): their
 * calls take microseconds to milliseconds; one still inside after this is stuck or generating a key
 * pair, and the re-initialisation does without C_Finalize or waits for later.
 */
const EXCLUSIVE_WAIT_MS = 200;
/** After a recycle found the module busy, calls go on for this long before it is tried again. */
const RECYCLE_RETRY_MS = 1000;
/** How long a session-objects recycle waits for the other threads: their calls, not a key-pair generation. */
const RECYCLE_WAIT_MS = 20;

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
  /**
   * The threads of this process in the module, and its process-wide counts: session objects
   * created and token objects written since the module was (re-)initialised (module-lock.ts).
   */
  private readonly lock: ModuleLock;
  /** The module's initialisation these sessions and handles belong to (ModuleLock.generation). */
  private generation = -1;
  /** Calls running on the libuv pool (key-pair generation). */
  private asyncInFlight = 0;
  private mayFinalize: boolean;
  /** A session-objects recycle found the module busy: not tried again before this. */
  private recycleNotBefore = 0;
  /**
   * A re-initialisation under way (recycle, reconnect). connect waits between its attempts, and
   * the module is finalised meanwhile: calls wait for it instead of using the old sessions (which
   * fail as a device fault and would open the circuit), and a second one joins it instead of
   * finalising the module under the first.
   */
  private reconnecting?: Promise<ExclusiveOutcome>;
  /** The token refused the PIN once: never offered again in this process (see login). */
  private pinRefused?: HsmError;

  constructor(
    private readonly p11: pkcs11js.PKCS11,
    private readonly options: Pkcs11Options,
    /** Told after every (re)connect: handles from before it are void. */
    private readonly onConnected: () => void,
  ) {
    this.mayFinalize = options.mayFinalize ?? true;
    this.lock = new ModuleLock(options.moduleLock);
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
        return await this.connectOnce();
      } catch (err) {
        const isTransient = err instanceof TokenNotListed || (err instanceof HsmError && err.ckr === 'CKR_GENERAL_ERROR');
        if (!isTransient || attempt >= CONNECT_ATTEMPTS) throw err;
        if ((await this.finalizing(() => this.finalize())) === 'busy') throw err;
      }
      await new Promise((r) => setTimeout(r, 25 * attempt));
    }
  }

  /** One attempt, inside the module (ModuleLock) unless this thread holds it exclusively. */
  private async connectOnce(): Promise<void> {
    const waiting = this.lock.isExclusive ? undefined : this.lock.enter();
    if (waiting) await waiting;
    try {
      this.connectNow();
    } finally {
      if (!this.lock.isExclusive) this.lock.leave();
    }
  }

  /**
   * Sessions and login on the module as it is initialised now. A thread that finds the module
   * re-initialised by another (ModuleLock.generation) does this too: its old sessions are void, and
   * their handles may now be other threads' sessions, so they are dropped, never closed. The
   * generation is taken for these sessions only once they are open and logged in: after a failure
   * the next call connects again rather than use the old sessions and object handles (which may
   * now name other objects: a data key wrapped under another key).
   */
  private connectNow(): void {
    const generation = this.lock.generation;
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
    this.generation = generation;
  }

  /** The module's initialisation now: a search made under an older one may have missed objects (refreshTokenIndex). */
  get moduleGeneration(): number {
    return this.lock.generation;
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
    this.lock.sessionObjectCreated();
    return handle;
  }

  /** Counts a token object made or destroyed by this process (see refreshTokenIndex). */
  tokenWritten(): void {
    this.lock.tokenWritten();
  }

  /**
   * For a search by id that found nothing: on a token whose index goes stale after this process's
   * own writes (staleIndexAfterOwnWrite), re-initialise the module, which re-reads the token's
   * objects, if this process wrote since the last initialisation. Returns whether the search may
   * find more now. Without a write of ours in between the module's index is current (it re-reads
   * when another process writes): a key that is really missing costs one search, not a recycle.
   * When the index may be stale but cannot be re-read now (another thread stays inside the module,
   * a key pair is being generated on the libuv pool, the circuit is open), "nothing found" cannot be
   * believed: it throws (KeyUnavailableException; a deletion or rollback is retried) rather than let
   * a deletion take an object it does not see for gone and leave the key's material on the token.
   * `searchedIn`: the module generation the search ran in; if another thread re-initialised the
   * module since (resetting the count of writes), the search is worth repeating on the fresh index.
   */
  async refreshTokenIndex(searchedIn: number): Promise<boolean> {
    if (!this.options.staleIndexAfterOwnWrite) return false;
    if (this.lock.generation !== searchedIn) return true;
    if (!this.reconnecting && this.lock.tokenWrites === 0) return false;
    const cannot = !this.reconnecting && (this.asyncInFlight > 0 || !this.isUp);
    if (cannot || (await this.recycle('token-index')) === 'busy') {
      throw new HsmError('key', 'C_FindObjects', 'CKR_OBJECT_HANDLE_INVALID', {
        cause: new Error('no token object found, but this process cannot re-read the token objects now (its list may miss those other processes made); try again'),
      });
    }
    return true;
  }

  /** Runs an *Async call on the libuv pool, known to recycle, reconnect and close, which wait for it. */
  async offThread<T>(body: () => Promise<T>): Promise<T> {
    // Inside the module already: called in a withSession body, which counts until the call settles.
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
    // Postponed while another thread stays inside the module (an abandoned HSM thread, a key pair
    // being generated on the libuv pool): C_Finalize would pull the module from under it.
    if (recycleAfter !== undefined && this.lock.sessionObjects >= recycleAfter && this.asyncInFlight === 0 && performance.now() >= this.recycleNotBefore) {
      if ((await this.recycle('session-objects')) === 'busy') this.recycleNotBefore = performance.now() + RECYCLE_RETRY_MS;
    }
    // Inside the module (ModuleLock) for the call and its healing: no other thread finalises it
    // meanwhile. Written out rather than through inside(): this runs for every PKCS#11 call.
    const waiting = this.lock.enter();
    if (waiting) await waiting;
    try {
      // Another thread re-initialised the module since these sessions were opened: they are void.
      if (this.generation !== this.lock.generation) this.connectNow();
      // A session that saw a device-class failure is replaced too: if the token is fine, the
      // fault may be that session's; if it is down, the pool keeps it (nothing to reopen).
      return await this.pool.use((s) => call(label, () => body(s)), (err) => err instanceof HsmError && (err.kind === 'session' || err.kind === 'device'));
    } catch (err) {
      if (!(err instanceof HsmError)) throw err;
      if (err.kind === 'device') throw this.confirmDeviceFailure(err);
      const isLoggedOut = err.kind !== 'session' && err.ckr === 'CKR_USER_NOT_LOGGED_IN';
      if (isRetry || (err.kind !== 'session' && !isLoggedOut)) throw err;
      if (isLoggedOut) await this.pool.use((s) => this.login(s), () => false);
    } finally {
      this.lock.leave();
    }
    // Once more, on a fresh session or after logging in again.
    return this.withSession(label, body, true);
  }

  /** Runs fn counted inside the module (ModuleLock): no other thread finalises it meanwhile. */
  private async inside<T>(fn: () => Promise<T>): Promise<T> {
    const waiting = this.lock.enter();
    if (waiting) await waiting;
    try {
      return await fn();
    } finally {
      this.lock.leave();
    }
  }

  /**
   * withSession for a call that makes token objects with a ref's id: never repeated. After a
   * session error its outcome is unknown (the token may have made the object and lost the answer),
   * and a second object with the id would make the key ambiguous; the caller's rollback destroys
   * whatever carries the id instead (key-material.ts).
   */
  async creating<T>(label: string, body: (s: Session) => T): Promise<T> {
    return this.withSession(
      label,
      (s) => {
        // Counted before the call (a failed one may still have made the object) and inside the
        // module: a re-initialisation, which resets the count, cannot come between it and the call.
        this.tokenWritten();
        return body(s);
      },
      true,
    );
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
        await this.withSession('C_Login', (s) => this.login(s), true);
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
   * C_Finalize and connect again, between calls and with no other thread inside the module
   * (ModuleLock): every call body but key-pair generation is synchronous (and that one is waited
   * for), so none is in the middle of a PKCS#11 call here. A token that does not come back opens
   * the circuit. 'busy': another thread stayed inside; nothing was done.
   */
  private recycle(reason: RecycleReason): Promise<ExclusiveOutcome> {
    const objects = this.lock.sessionObjects;
    // Freeing session objects can wait: it gives up sooner than a re-read of the index, so that a
    // thread generating a key pair (seconds) holds every other thread for RECYCLE_WAIT_MS a second at most.
    const waitMs = reason === 'session-objects' ? RECYCLE_WAIT_MS : EXCLUSIVE_WAIT_MS;
    return this.alone(() => this.finalizing(() => this.recycleNow(reason, objects), waitMs));
  }

  /** Runs a re-initialisation unless one is under way: then waits for that one (see reconnecting). */
  private alone(work: () => Promise<ExclusiveOutcome>): Promise<ExclusiveOutcome> {
    this.reconnecting ??= work().finally(() => (this.reconnecting = undefined));
    return this.reconnecting;
  }

  /** Runs work with the module to this thread alone (ModuleLock); never while mayFinalize is false. */
  private finalizing(work: () => Promise<void> | void, waitMs = EXCLUSIVE_WAIT_MS): Promise<ExclusiveOutcome> {
    if (!this.mayFinalize) return Promise.resolve('busy');
    return this.lock.exclusive(work, waitMs);
  }

  private finalize(): void {
    try {
      this.p11.C_Finalize();
    } catch {
      // not initialised, or already finalised: either way start afresh
    }
  }

  private async recycleNow(reason: RecycleReason, objects: number): Promise<void> {
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
   * resets whatever state the library was left in. While another thread stays inside the module
   * (an abandoned HSM thread; mayFinalize false) it only closes this instance's sessions and opens
   * new ones and logs in again; a library that needs the reset heals once that thread has left.
   * Never under a key-pair generation on the libuv pool: it fails or ends soon on a down token, and
   * one that never settles is the HSM thread watchdog's to abandon.
   */
  private async tryReconnect(): Promise<void> {
    if (this.asyncInFlight > 0 || this.reconnecting) return;
    await this.alone(() => this.reconnectNow());
  }

  private async reconnectNow(): Promise<ExclusiveOutcome> {
    try {
      const outcome = await this.finalizing(async () => {
        this.finalize();
        await this.connect();
      });
      if (outcome === 'busy') await this.inside(async () => this.dropSessions());
      // 'other': another thread re-initialised the module meanwhile; these sessions died with it.
      if (outcome !== 'done') await this.connect();
      clearInterval(this.recovery);
      this.recovery = undefined;
      this.options.onStateChange?.(true, outcome === 'busy' ? 'token answers again (sessions reopened without C_Finalize: another thread is inside the module)' : 'token answers again');
      return outcome;
    } catch {
      return 'busy'; // still down; the next tick tries again
    }
  }

  /** Gives up this instance's sessions: closed, unless the module was re-initialised since (then they are void, their handles maybe others'). */
  private dropSessions(): void {
    const sessions = this.pool.drain();
    if (this.generation === this.lock.generation) closeSessions(this.p11, sessions);
  }

  /**
   * Closes this instance's sessions, then finalises and unloads the module unless another thread
   * stays inside it: an abandoned HSM thread, another HSM thread (its owner says so: mayFinalize),
   * or a key-pair generation still on the libuv pool after a bounded wait. The process ends soon
   * after anyway; pulling the module from under a thread in a call is undefined behaviour.
   */
  async close(): Promise<void> {
    clearInterval(this.recovery);
    await this.reconnecting?.catch(() => undefined);
    // Let key-pair generations on the libuv pool end first (bounded: shutdown goes on).
    for (const deadline = performance.now() + CLOSE_WAIT_MS; this.asyncInFlight > 0 && performance.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await this.inside(async () => this.dropSessions());
    if (this.asyncInFlight > 0) return;
    await this.finalizing(() => {
      try {
        this.p11.C_Finalize();
      } finally {
        this.p11.close();
      }
    });
  }
}
