import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { secretsFoundIn } from '../../support/secrets';

describe('the log scan’s secret search', () => {
  it('finds exactly what a substring search finds, at the start, middle and end of the text', () => {
    const secrets = Array.from({ length: 200 }, (_, i) => crypto.randomBytes(12 + (i % 40)).toString('base64'));
    const planted = [secrets[3], secrets[77], secrets[199]];
    const filler = () => crypto.randomBytes(5000).toString('base64');
    const text = `${planted[0]}${filler()}"${planted[1]}"${filler()}${planted[2]}`;
    const expected = secrets.filter((s) => s.length >= 16 && text.includes(s)).sort();
    assert.deepEqual(secretsFoundIn(text, secrets.filter((s) => s.length >= 16)).sort(), expected);
    assert.deepEqual(expected, [...planted].sort());
  });

  it('does not report a secret whose prefix matches but whose rest differs, and copes with short text', () => {
    const secret = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
    assert.deepEqual(secretsFoundIn('xxABCDEFGHIJKLMNOPQRSTxxxx', [secret]), []);
    assert.deepEqual(secretsFoundIn('short', [secret]), []);
    assert.deepEqual(secretsFoundIn(secret, [secret]), [secret]);
  });
});
