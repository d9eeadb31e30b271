/**
 * What a client of a crashing gateway may rely on: every result it was ACKNOWLEDGED (a 200 fully
 * received) and nothing else. A request that failed with a 4xx was refused and changed nothing; one
 * that failed otherwise (a 5xx, a reset connection, a timeout: the kill) may or may not have taken
 * effect, so the states it could have left are all allowed until the next check reads the real one.
 */

export type KeyState = 'Enabled' | 'Disabled' | 'PendingDeletion';
export type KeyKind = 'symmetric' | 'rsa-encrypt' | 'ecc-sign';

export interface LedgerKey {
  keyId: string;
  kind: KeyKind;
  /** The round whose load created it. */
  round: number;
  /** The states the key may be in: one once known; more while an unanswered change may have landed. */
  states: Set<KeyState>;
  /** On-demand rotations made: at least min (acknowledged), at most max (also the unanswered). */
  rotations: { min: number; max: number };
  /** One lifecycle change per key at a time, so that the order of acknowledgements is the order of effects. */
  isBusy: boolean;
  /** Described after a restart at least once. */
  isChecked: boolean;
}

export interface LedgerCiphertext {
  keyId: string;
  blob: Uint8Array;
  plaintext: Buffer;
  context?: Record<string, string>;
  /** For an RSA key: the algorithm Decrypt needs. */
  algorithm?: 'RSAES_OAEP_SHA_1';
  round: number;
  from: 'Encrypt' | 'GenerateDataKey';
  isChecked: boolean;
}

export interface LedgerSignature {
  keyId: string;
  message: Buffer;
  signature: Uint8Array;
  round: number;
  isChecked: boolean;
}

export interface LedgerAlias {
  name: string;
  keyId: string;
  round: number;
  isChecked: boolean;
}

/** The outcome of one request, as a client can tell it. */
export type Outcome = 'acknowledged' | 'refused' | 'unknown';

export function outcomeOf(err: unknown): Exclude<Outcome, 'acknowledged'> {
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return status !== undefined && status >= 400 && status < 500 ? 'refused' : 'unknown';
}

/** The error's wire type or, for a failure below HTTP, its code (ECONNRESET, TimeoutError, …). */
export function errorName(err: unknown): string {
  const e = err as { name?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  return `${e.code ?? e.name ?? 'Error'}${status ? ` ${status}` : ''}`;
}

export class Ledger {
  readonly keys = new Map<string, LedgerKey>();
  readonly ciphertexts: LedgerCiphertext[] = [];
  readonly signatures: LedgerSignature[] = [];
  readonly aliases: LedgerAlias[] = [];
  /** Every key id ever seen, acknowledged or found afterwards (a CreateKey that landed unanswered). */
  readonly seenKeyIds = new Set<string>();
  /** x-amzn-RequestId of every acknowledged answer not yet found in the audit trail. */
  acknowledgedRequests: string[] = [];

  addKey(keyId: string, kind: KeyKind, round: number): void {
    this.keys.set(keyId, { keyId, kind, round, states: new Set(['Enabled']), rotations: { min: 0, max: 0 }, isBusy: false, isChecked: false });
    this.seenKeyIds.add(keyId);
  }

  /** Keys whose state is known to be `state` (exactly one possibility). */
  keysIn(state: KeyState, kind?: KeyKind): LedgerKey[] {
    return [...this.keys.values()].filter((k) => k.states.size === 1 && k.states.has(state) && (!kind || k.kind === kind));
  }

  /** Records a lifecycle change's outcome: acknowledged sets the state, unknown adds a possibility. */
  changed(key: LedgerKey, to: KeyState, outcome: Outcome): void {
    if (outcome === 'acknowledged') key.states = new Set([to]);
    else if (outcome === 'unknown') key.states.add(to);
  }

  rotated(key: LedgerKey, outcome: Outcome): void {
    if (outcome === 'acknowledged') key.rotations.min++;
    if (outcome !== 'refused') key.rotations.max++;
  }
}
