import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CredentialsFileError, PrincipalStore } from '../../../src/auth/principals';
import { createLogger } from '../../../src/logging/logger';

const ADMIN = { accessKeyId: 'AKIAQKMSADMIN000001', secretAccessKey: 'admin-secret-0123456789', principalArn: 'arn:aws:iam::111122223333:root' };
const principal = (name: string) => ({ accessKeyId: `AKIAQKMS${name.toUpperCase().padEnd(11, '0')}`, secretAccessKey: `${name}-secret-0123456789`, principalArn: `arn:aws:iam::111122223333:user/${name}` });

describe('PrincipalStore and its credentials file', () => {
  let dir: string;
  let file: string;
  let store: PrincipalStore | undefined;
  const write = (text: string) => fs.writeFileSync(file, text);
  const writePrincipals = (...names: string[]) => write(JSON.stringify({ principals: names.map(principal) }));
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-principals-'));
    file = path.join(dir, 'credentials.json');
  });
  afterEach(() => {
    store?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('loads a new version while idle, so a later broken version leaves every replica on the same principals', async function () {
    this.timeout(5000);
    writePrincipals('alice');
    store = new PrincipalStore(ADMIN, file, createLogger({ level: 'error', silent: true }));
    writePrincipals('alice', 'bob'); // no request comes while this version stands
    await new Promise((r) => setTimeout(r, 1300));
    write('{"principals": [ broken');
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(store.lookup(principal('bob').accessKeyId)?.principalArn, principal('bob').principalArn);
  });

  describe('at start-up, a file it cannot use is a configuration error naming the file and the field', () => {
    const problemsOf = (text: string): string[] => {
      write(text);
      try {
        store = new PrincipalStore(ADMIN, file, createLogger({ level: 'error', silent: true }));
      } catch (err) {
        assert.ok(err instanceof CredentialsFileError, String(err));
        assert.equal(err.file, file);
        assert.ok(err.message.startsWith(`QKMS_CREDENTIALS_FILE ${file}: `));
        return err.problems;
      }
      assert.fail('the file was accepted');
    };
    const withPolicy = (policy: unknown) => JSON.stringify({ principals: [principal('alice'), { ...principal('bob'), policy }] });

    it('an empty Statement list: the policy path, with the policy checker’s reason', () => {
      assert.deepEqual(problemsOf(withPolicy({ Version: '2012-10-17', Statement: [] })), ['principals[1].policy.Statement: The policy document is malformed: it has no Statement.']);
    });

    it('a statement it cannot evaluate: the path of that statement', () => {
      const ok = { Effect: 'Allow', Action: 'kms:Decrypt', Resource: '*' };
      assert.deepEqual(problemsOf(withPolicy({ Statement: [ok, { Effect: 'Permit', Action: 'kms:Encrypt' }] })), [
        'principals[1].policy.Statement[1]: The policy document is malformed: Effect must be Allow or Deny.',
      ]);
    });

    it('schema problems: every bad field by its path, and no secret in the message', () => {
      const text = JSON.stringify({ principals: [{ ...principal('alice'), secretAccessKey: 'short-secret' }, { ...principal('bob'), principalArn: 'bob' }] });
      const problems = problemsOf(text);
      assert.deepEqual(problems.map((p) => p.split(':')[0]), ['principals[0].secretAccessKey', 'principals[1].principalArn']);
      assert.ok(!problems.join().includes('short-secret'));
    });

    it('JSON that does not parse: where, without quoting the text (it may hold a secret)', () => {
      const problems = problemsOf('{ "principals": [\n  { "secretAccessKey": "very-secret-value" oops } ] }');
      assert.equal(problems.length, 1);
      assert.match(problems[0], /^not valid JSON at line 2 column \d+$/);
    });

    it('refuses the published development credential as a further principal', () => {
      const text = JSON.stringify({ principals: [{ ...principal('alice'), accessKeyId: 'AKIAQKMSLOCALDEV0001' }, { ...principal('bob'), secretAccessKey: 'qkms-local-development-only' }] });
      assert.deepEqual(problemsOf(text).map((p) => p.split(':')[0]), ['principals[0].accessKeyId', 'principals[1].secretAccessKey']);
    });

    it('a missing file', () => {
      fs.rmSync(dir, { recursive: true, force: true });
      assert.throws(() => new PrincipalStore(ADMIN, file, createLogger({ level: 'error', silent: true })), (err: unknown) => err instanceof CredentialsFileError && /ENOENT/.test(err.message));
    });
  });
});
