import assert from 'node:assert/strict';
import { runCrashLoop } from '../support/crash-loop';

/**
 * Issue 12 "kill -9 at any moment of any operation never loses an acknowledged ciphertext or key and
 * leaves no orphan after reconciliation", tried at random: ten rounds on one data dir of a mixed
 * concurrent load (CreateKey symmetric and asymmetric, Encrypt and GenerateDataKey with contexts,
 * Decrypt, Sign, CreateAlias, RotateKeyOnDemand, Disable/EnableKey, Schedule/CancelKeyDeletion),
 * each ended by SIGKILL at a random moment — some inside a held PKCS#11 call, some restarts killed
 * again while reconciling. `npm run crash-soak` runs the same loop for as many rounds as wanted.
 */
describe('Crash safety: randomized kill -9 under a mixed load', function () {
  this.timeout(300000);

  it('10 rounds: every acknowledged ciphertext, key, state, rotation, alias and signature survives; token and store agree; qkms orphans agrees; the audit trail verifies and holds every acknowledged answer', async () => {
    const figures = await runCrashLoop({ rounds: 10 });
    const { seed, rounds, kills, checked, lost, token, rolledBackAtStartup, durationS } = figures;
    console.log(`      ${JSON.stringify({ seed, rounds, durationS, kills: { total: kills.total, midRequest: kills.midRequest, inHeldHsmCall: kills.inHeldHsmCall, duringStartup: kills.duringStartup }, checked, lost, rolledBackAtStartup })}`);
    assert.deepEqual(figures.failures, [], `kept in ${figures.workDir}`);
    assert.equal(rounds, 10);
    assert.deepEqual(lost, { keys: 0, keyStates: 0, rotations: 0, aliases: 0, ciphertexts: 0, signatures: 0, auditRecords: 0 });
    assert.deepEqual({ orphans: token.orphans, missing: token.missing, duplicates: token.duplicates, intentsLeft: token.intentsLeft, cli: token.cliDisagreements }, { orphans: 0, missing: 0, duplicates: 0, intentsLeft: 0, cli: 0 });
    // The loop measured something: kills landed in requests, and what they could have damaged was checked.
    assert.ok(kills.midRequest >= 8, `only ${kills.midRequest} of ${kills.total} kills landed while requests were in flight`);
    assert.ok(checked.ciphertexts >= 100 && checked.keys >= 20, `only ${checked.ciphertexts} ciphertexts and ${checked.keys} keys were checked`);
    assert.equal(checked.orphanCliRuns, 10);
    assert.equal(checked.auditVerifications, 10, 'qkms audit verify passed after every restart');
    assert.ok(checked.auditedAnswers >= 500, `only ${checked.auditedAnswers} acknowledged answers were looked up in the audit trail`);
  });
});
