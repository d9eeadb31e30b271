import crypto from 'node:crypto';
import type * as pkcs11js from 'pkcs11js';
import type { CallRecorder } from '../call-stats';
import { HsmError } from '../hsm-error';
import type { IntegrityErrors } from '../profiles';
import { ckrName, classifyCkr } from './ckr-table';
import type { FaultPlan } from './faults';

/**
 * The module with every C_* call timed and counted (two clock reads and a bucket scan: the
 * calls themselves take tens of µs), the fault plan applied when set, and every failure turned
 * into an HsmError classified here, where the failing function is known (a token's quirk may be
 * one function's, profiles.ts integrityErrors). An injected fault counts as the function's
 * failure, as the token's own would. The *Async forms are timed until they settle.
 *
 * Because each failure is named here, by the C_* function that failed, code above never names
 * one: a block of several calls (generate, read, wrap, destroy) reports the call that failed.
 */
export function instrumented(p11: pkcs11js.PKCS11, calls: CallRecorder, { faults, integrityErrors }: { faults?: FaultPlan; integrityErrors?: IntegrityErrors }): pkcs11js.PKCS11 {
  // One wrapper per function, made on first use: not a new closure on every call.
  const wrappers = new Map<string | symbol, unknown>();
  return new Proxy(p11, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      let wrapper = wrappers.get(prop);
      if (!wrapper) {
        wrapper = wrap(target, prop, value as (...a: unknown[]) => unknown);
        wrappers.set(prop, wrapper);
      }
      return wrapper;
    },
  });

  function wrap(target: pkcs11js.PKCS11, prop: string | symbol, value: (...a: unknown[]) => unknown): unknown {
    if (typeof prop !== 'string' || !prop.startsWith('C_')) return value.bind(target); // native methods need the real this
    // The *Async forms are the same PKCS#11 function to a token's quirks.
    const fn = prop.replace(/Async$/, '');
    return (...args: unknown[]) => {
      const started = performance.now();
      const done = (err?: unknown) => calls.record(prop, (performance.now() - started) / 1000, err === undefined ? undefined : (ckrName(err) ?? 'unknown'));
      const failed = (err: unknown) => {
        done(err);
        return classified(fn, err, integrityErrors);
      };
      try {
        const delayMs = faults?.apply(prop) ?? 0;
        if (delayMs > 0) {
          // An *Async call held back (a slow device): the thread stays free meanwhile.
          return new Promise((resolve) => setTimeout(resolve, delayMs))
            .then(() => (value as (...a: unknown[]) => Promise<unknown>).apply(target, args))
            .then(
              (v) => (done(), v),
              (err: unknown) => Promise.reject(failed(err)),
            );
        }
        const result = value.apply(target, args);
        if (result instanceof Promise) {
          const settled = result.then((v) => (done(), v), (err: unknown) => Promise.reject(failed(err)));
          // A hold after an *Async call: the result waits, the thread does not.
          return faults ? settled.then(async (v) => (await new Promise((r) => setTimeout(r, faults.apply(prop, true))), v)) : settled;
        }
        done();
        faults?.apply(prop, true);
        return result;
      } catch (err) {
        const classifiedErr = failed(err);
        drainOpenSslErrors();
        throw classifiedErr;
      }
    };
  }
}

/**
 * Runs a block of PKCS#11 work and turns anything it throws into an HsmError. A C_* failure
 * already is one, named by the function that failed (instrumented): it passes unchanged. `label`
 * names only what is not a PKCS#11 call's failure (a TypeError in the block, say).
 */
export function call<T>(label: string, body: () => T): T {
  try {
    const result = body();
    // An async body (key-pair generation on the libuv pool) is classified when it settles.
    if (result instanceof Promise) return result.catch((err: unknown) => Promise.reject(classified(label, err))) as T;
    return result;
  } catch (err) {
    throw classified(label, err);
  }
}

export function classified(fn: string, err: unknown, integrityErrors?: IntegrityErrors): HsmError {
  if (err instanceof HsmError) return err;
  const ckr = ckrName(err);
  return new HsmError(classifyCkr(ckr, fn, integrityErrors), fn, ckr, { cause: err });
}

/**
 * Runs `cleanup` after `body` (a session object destroyed, say). When body failed, that failure
 * is the one reported: a cleanup that fails too (the same device fault, most likely) must not
 * replace it, or the error would name the cleanup's function instead of the one that failed.
 */
export function withCleanup<T>(body: () => T, cleanup: () => void): T {
  let result: T;
  try {
    result = body();
  } catch (err) {
    try {
      cleanup();
    } catch {
      // the body's failure is the one to report
    }
    throw err;
  }
  cleanup();
  return result;
}

/**
 * Found here: SoftHSM2 binds to the OpenSSL that Node itself exports, so a failed operation (a bad
 * OAEP ciphertext, a bad KWP blob) leaves its error on this thread's OpenSSL error queue, and the
 * next node:crypto key import on the thread throws that stale error ("rsa routines::padding check
 * failed"). crypto.randomBytes clears the queue; it runs after every failed PKCS#11 call and
 * before QKMS encodes keys with node:crypto.
 */
export function drainOpenSslErrors(): void {
  crypto.randomBytes(1);
}
