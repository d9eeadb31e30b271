import type { Hsm } from './hsm';
import { HsmError } from './hsm-error';

/**
 * Bounds every HSM call by a deadline: past it the caller gets HsmError kind 'timeout'
 * (DependencyTimeoutException on the wire). With the HSM thread (QKMS_HSM_THREAD) the event loop
 * is free to answer at the deadline, and the thread's watchdog replaces a thread stuck in a call;
 * on the event loop (QKMS_HSM_THREAD=false) a synchronous call is only found late once it returns.
 */
export function withDeadline(inner: Hsm, timeoutMs: number): Hsm {
  const wrap =
    <A extends unknown[], R>(name: string, fn: (...args: A) => Promise<R>) =>
    (...args: A): Promise<R> => {
      const started = performance.now();
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new HsmError('timeout', name)), timeoutMs);
      });
      const work = fn.apply(inner, args).then((result) => {
        if (performance.now() - started > timeoutMs) throw new HsmError('timeout', name);
        return result;
      });
      return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
    };
  return {
    generateKek: wrap('generateKek', inner.generateKek),
    generateMacKey: wrap('generateMacKey', inner.generateMacKey),
    generateWrappedDataKey: wrap('generateWrappedDataKey', inner.generateWrappedDataKey),
    unwrapDataKey: wrap('unwrapDataKey', inner.unwrapDataKey),
    encryptAesGcm: wrap('encryptAesGcm', inner.encryptAesGcm),
    decryptAesGcm: wrap('decryptAesGcm', inner.decryptAesGcm),
    hmacSign: wrap('hmacSign', inner.hmacSign),
    hmacVerify: wrap('hmacVerify', inner.hmacVerify),
    randomBytes: wrap('randomBytes', inner.randomBytes),
    destroyKey: wrap('destroyKey', inner.destroyKey),
    listKeyLabels: wrap('listKeyLabels', inner.listKeyLabels),
    health: () => wrap('health', inner.health)().catch((err: unknown) => ({ isUp: false, detail: err instanceof Error ? err.message : String(err) })),
    close: () => inner.close(),
  };
}
