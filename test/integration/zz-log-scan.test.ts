import assert from 'node:assert/strict';
import { recordedLogs, registeredSecrets, secretsFoundIn } from '../support/secrets';

/**
 * Runs last (files run in name order). Every log line and audit record the suite's gateways wrote,
 * in-process and as child processes, against every plaintext, data key, secret access key and PIN
 * the suite used: none may appear, in base64, hex or as text.
 */
describe('Secrets never reach a log (whole-suite scan)', () => {
  it('finds none of the suite’s plaintexts, data keys, secret keys or PINs in any log or audit file', function () {
    this.timeout(120_000); // one linear pass, but over everything the suite logged
    const secrets = registeredSecrets();
    const logs = recordedLogs();
    assert.ok(secrets.length > 100, `only ${secrets.length} secrets were recorded: is the recording middleware in place?`);
    assert.ok(logs.length > 100_000, `only ${logs.length} characters of logs were recorded`);
    const found = secretsFoundIn(logs, secrets);
    assert.deepEqual(found.map((s) => `${s.slice(0, 6)}… (${s.length} chars)`), []);
  });
});
