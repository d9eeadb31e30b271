export type TokenKind = 'opencryptoki' | 'nss' | 'tpm2';

/**
 * A freshly initialised PKCS#11 token the tests may use until `stop()`. `env` must be in the
 * environment of whatever loads the module (process.env before C_Initialize, or a child gateway's
 * env); `initArgs` is the C_Initialize library-parameter string (pReserved), NSS only.
 */
export interface TokenUnderTest {
  kind: TokenKind;
  modulePath: string;
  tokenLabel: string;
  pin: string;
  soPin: string;
  initArgs?: string;
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** A token could not be started because its packages are missing: `skip` names them. */
export interface TokenSkipped {
  skip: string;
}
