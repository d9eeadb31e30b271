/**
 * What went wrong at the device, classified by what the caller should do about it:
 * - integrity: the data does not verify (bad tag, bad wrapped key): the client's fault.
 * - key: the key object is gone or unusable: KeyUnavailableException.
 * - session: this session is broken: discard it, the next call gets a fresh one.
 * - device: the token or library is down: KeyUnavailableException until it returns.
 * - auth: the login was lost.
 * - unsupported: the token cannot do what was asked (mechanism, parameter, key shape):
 *   UnsupportedOperationException, naming the function and the code.
 * - config: a setting does not fit the token (profile, template): an operator problem, a 500.
 * - timeout: the call exceeded QKMS_HSM_TIMEOUT_MS: DependencyTimeoutException.
 */
export type HsmErrorKind = 'integrity' | 'key' | 'session' | 'device' | 'auth' | 'unsupported' | 'config' | 'timeout' | 'internal';

export class HsmError extends Error {
  constructor(
    readonly kind: HsmErrorKind,
    readonly fn: string,
    readonly ckr?: string,
    options?: { cause?: unknown },
  ) {
    super(`${fn} failed: ${ckr ?? kind}`, options);
    this.name = 'HsmError';
  }
}
