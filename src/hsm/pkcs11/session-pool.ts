/**
 * A fixed set of logged-in PKCS#11 sessions, lent one operation at a time (a session holds one
 * active operation). Callers borrow through `use`, which returns the session in `finally`, or
 * replaces it when the call shows the session is broken.
 */
export class SessionPool<S> {
  private readonly idle: S[] = [];
  private readonly waiters: Array<(s: S) => void> = [];
  private inUse = 0;

  constructor(
    initial: S[],
    private readonly reopen: (broken: S) => S,
  ) {
    this.idle.push(...initial);
  }

  get stats(): { size: number; inUse: number; waiters: number } {
    return { size: this.idle.length + this.inUse, inUse: this.inUse, waiters: this.waiters.length };
  }

  async use<T>(fn: (session: S) => T | Promise<T>, isSessionBroken: (err: unknown) => boolean): Promise<T> {
    const session: S = this.idle.length > 0 ? this.idle.pop()! : await new Promise<S>((resolve) => this.waiters.push(resolve));
    this.inUse++;
    let toReturn = session;
    try {
      return await fn(session);
    } catch (err) {
      if (isSessionBroken(err)) toReturn = this.tryReopen(session);
      throw err;
    } finally {
      this.inUse--;
      const next = this.waiters.shift();
      if (next) next(toReturn);
      else this.idle.push(toReturn);
    }
  }

  /** Every idle session, for shutdown. */
  drain(): S[] {
    return this.idle.splice(0);
  }

  private tryReopen(broken: S): S {
    try {
      return this.reopen(broken);
    } catch {
      return broken; // the device is down; the next call fails and classifies again
    }
  }
}
