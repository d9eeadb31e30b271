import { startNssToken } from './nss';
import { startOpencryptokiToken } from './opencryptoki';
import { startTpm2Token } from './tpm2';
import type { TokenKind, TokenSkipped, TokenUnderTest } from './types';

export type { TokenKind, TokenSkipped, TokenUnderTest } from './types';

export const TOKEN_KINDS: readonly TokenKind[] = ['opencryptoki', 'nss', 'tpm2'];

/**
 * Starts a fresh token of `kind` from the Debian packages (scripts/ensure-tokens.sh), or says which
 * packages are missing. Anything else that goes wrong throws: a broken install must fail, not skip.
 */
export function startToken(kind: TokenKind): Promise<TokenUnderTest | TokenSkipped> {
  switch (kind) {
    case 'opencryptoki':
      return startOpencryptokiToken();
    case 'nss':
      return startNssToken();
    case 'tpm2':
      return startTpm2Token();
  }
}

export function isSkipped(started: TokenUnderTest | TokenSkipped): started is TokenSkipped {
  return 'skip' in started;
}
