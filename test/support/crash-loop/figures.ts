import type { CheckTally } from './after-restart';
import type { Ledger } from './ledger';
import type { LoadCounts } from './mixed-load';

/** What a crash loop did and found: the figures the README reports. */
export interface CrashLoopFigures {
  seed: number;
  rounds: number;
  durationS: number;
  /**
   * Kills: midRequest when requests were in flight, inHeldHsmCall inside a PKCS#11 call held by
   * QKMS_FAULTS_FILE, duringStartup a restart killed before it was ready (while reconciling).
   */
  kills: { total: number; midRequest: number; inHeldHsmCall: number; duringStartup: number; requestsInFlight: number; inFlightByOperation: Record<string, number> };
  requests: LoadCounts;
  acknowledged: { keys: number; aliases: number; ciphertexts: number; signatures: number };
  /** Distinct results checked after a kill and a restart (each at least once), and the checks made in all. */
  checked: { ciphertexts: number; decrypts: number; keys: number; keyChecks: number; aliases: number; aliasChecks: number; signatures: number; skippedPendingDeletion: number; orphanCliRuns: number; auditVerifications: number; auditedAnswers: number };
  lost: CheckTally['lost'] & { auditRecords: number };
  /** The token (pkcs11-tool, afresh) against the store after every restart, summed over rounds. */
  token: { orphans: number; missing: number; duplicates: number; intentsLeft: number; reportedAtStartup: number; cliDisagreements: number; objectsAtEnd: number; keysAtEnd: number };
  rolledBackAtStartup: number;
  /** Keys found in the store that no acknowledged CreateKey made (the kill came before the answer). */
  unacknowledgedKeysPersisted: number;
  /** Every loss or disagreement, precisely; empty when the loop passed. */
  failures: string[];
  /** Data dir, every gateway's log, every `qkms orphans` answer: kept after a failure, or when asked for. */
  workDir?: string;
}

export function emptyFigures(seed: number, workDir: string): CrashLoopFigures {
  return {
    seed, rounds: 0, durationS: 0,
    kills: { total: 0, midRequest: 0, inHeldHsmCall: 0, duringStartup: 0, requestsInFlight: 0, inFlightByOperation: {} },
    requests: { sent: 0, outcomes: { acknowledged: 0, refused: 0, unknown: 0 }, errors: {} },
    acknowledged: { keys: 0, aliases: 0, ciphertexts: 0, signatures: 0 },
    checked: { ciphertexts: 0, decrypts: 0, keys: 0, keyChecks: 0, aliases: 0, aliasChecks: 0, signatures: 0, skippedPendingDeletion: 0, orphanCliRuns: 0, auditVerifications: 0, auditedAnswers: 0 },
    lost: { keys: 0, keyStates: 0, rotations: 0, aliases: 0, ciphertexts: 0, signatures: 0, auditRecords: 0 },
    token: { orphans: 0, missing: 0, duplicates: 0, intentsLeft: 0, reportedAtStartup: 0, cliDisagreements: 0, objectsAtEnd: 0, keysAtEnd: 0 },
    rolledBackAtStartup: 0, unacknowledgedKeysPersisted: 0, failures: [], workDir,
  };
}

const sum = (counts: Record<string, number>) => Object.values(counts).reduce((s, x) => s + x, 0);

function add(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** One round's load, ended by a kill with these requests in flight. */
export function countKill(figures: CrashLoopFigures, counts: LoadCounts, inFlight: Record<string, number>, isHeld: boolean): void {
  const k = figures.kills;
  k.total++;
  k.requestsInFlight += sum(inFlight);
  if (sum(inFlight) > 0) k.midRequest++;
  if (isHeld) k.inHeldHsmCall++;
  add(k.inFlightByOperation, inFlight);
  figures.requests.sent += counts.sent;
  add(figures.requests.outcomes, counts.outcomes);
  add(figures.requests.errors, counts.errors);
}

export function countCheck(figures: CrashLoopFigures, tally: CheckTally): void {
  const c = figures.checked;
  c.decrypts += tally.ciphertexts;
  c.keyChecks += tally.keys;
  c.aliasChecks += tally.aliases;
  c.skippedPendingDeletion += tally.skippedPendingDeletion;
  add(figures.lost, tally.lost);
  figures.unacknowledgedKeysPersisted += tally.unacknowledgedKeys;
}

/** The ledger's totals: what was acknowledged, and how much of it was checked at least once. */
export function countLedger(figures: CrashLoopFigures, ledger: Ledger): void {
  const keys = [...ledger.keys.values()];
  figures.acknowledged = { keys: keys.length, aliases: ledger.aliases.length, ciphertexts: ledger.ciphertexts.length, signatures: ledger.signatures.length };
  const c = figures.checked;
  c.ciphertexts = ledger.ciphertexts.filter((x) => x.isChecked).length;
  c.keys = keys.filter((k) => k.isChecked).length;
  c.aliases = ledger.aliases.filter((a) => a.isChecked).length;
  c.signatures = ledger.signatures.filter((s) => s.isChecked).length;
}
