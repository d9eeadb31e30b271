import assert from 'node:assert/strict';
import fc from 'fast-check';
import { compileWildcard } from '../../../src/domain/wildcard';

/** The definition, by dynamic programming over code points: obviously right, quadratic, for small inputs. */
function reference(pattern: string, value: string): boolean {
  const p = Array.from(pattern);
  const v = Array.from(value);
  let row = v.map(() => false).concat(false); // row[j]: p[0,i) matches v[0,j)
  row[0] = true;
  for (const c of p) {
    const next = row.map(() => false);
    for (let j = 0; j <= v.length; j++) {
      if (c === '*') next[j] = row[j] || (j > 0 && next[j - 1]);
      else next[j] = j > 0 && row[j - 1] && (c === '?' || c === v[j - 1]);
    }
    row = next;
  }
  return row[v.length];
}

const elapsedMs = (fn: () => void): number => {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
};

describe('IAM wildcards', () => {
  it('* is any run (none too), ? is one character, everything else is literal', () => {
    const m = (p: string, v: string, ignoreCase = false) => compileWildcard(p, { ignoreCase })(v);
    assert.ok(m('*', ''));
    assert.ok(m('kms:*', 'kms:Decrypt'));
    assert.ok(!m('kms:*', 'km:Decrypt'));
    assert.ok(m('a?c', 'abc') && !m('a?c', 'ac') && !m('a?c', 'abbc'));
    assert.ok(m('*-prod', '-prod') && m('*-prod', 'x-y-prod') && !m('*-prod', 'x-prod-'));
    assert.ok(m('a*b*c', 'abc') && m('a*b*c', 'aXbYbZc') && !m('a*b*c', 'acb'));
    assert.ok(m('a.b+c(d)[e]^$|\\', 'a.b+c(d)[e]^$|\\') && !m('a.b', 'aXb'), 'RegExp syntax is literal');
    assert.ok(m('KMS:decrypt', 'kms:Decrypt', true) && !m('KMS:decrypt', 'kms:Decrypt'));
    assert.ok(m('?', '😀') && m('a?b', 'a😀b') && !m('??', '😀'), '? is one code point, not one UTF-16 unit');
    assert.ok(m('\n*', '\nx\ny'), 'a newline is an ordinary character');
  });

  it('agrees with the definition on small inputs (property)', () => {
    const alphabet = fc.constantFrom('a', 'b', '-', '*', '?', 'A', '😀');
    const text = (n: number) => fc.array(alphabet, { maxLength: n }).map((a) => a.join(''));
    fc.assert(
      fc.property(text(10), text(14), (pattern, value) => {
        assert.equal(compileWildcard(pattern)(value), reference(pattern, value), `${JSON.stringify(pattern)} ~ ${JSON.stringify(value)}`);
      }),
      { numRuns: 20000 },
    );
  });

  it('agrees with the definition on values built to match (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom('a', 'b', '*', '?'), { maxLength: 12 }), fc.array(fc.string({ maxLength: 3 }), { maxLength: 12 }), (p, fill) => {
        const pattern = p.join('');
        const value = p.map((c, i) => (c === '*' ? (fill[i] ?? '') : c === '?' ? (fill[i]?.[0] ?? 'x') : c)).join('');
        assert.ok(compileWildcard(pattern)(value), `${pattern} ~ ${value}`);
        assert.equal(compileWildcard(pattern)(value), reference(pattern, value));
      }),
      { numRuns: 5000 },
    );
  });

  it('segments longer than one 32-bit word (shift-and carries across words)', () => {
    const seg = `${'?'.repeat(40)}x${'a'.repeat(30)}?`;
    const pattern = `*${seg}*`;
    const hit = `${'b'.repeat(100)}${'c'.repeat(40)}x${'a'.repeat(30)}d${'b'.repeat(10)}`;
    assert.ok(compileWildcard(pattern)(hit));
    assert.equal(compileWildcard(pattern)(hit.replace('x', 'y')), false);
    fc.assert(
      fc.property(fc.array(fc.constantFrom('a', 'b', '?'), { minLength: 33, maxLength: 70 }), fc.string({ unit: fc.constantFrom('a', 'b'), maxLength: 120 }), (p, value) => {
        const pattern2 = `a*${p.join('')}*b`;
        assert.equal(compileWildcard(pattern2)(value), reference(pattern2, value));
      }),
      { numRuns: 2000 },
    );
  });

  describe('pathological patterns answer in linear time', () => {
    // Each of these takes a backtracking RegExp from seconds to forever.
    const cases: Array<[string, string]> = [
      ['*-*-*-*-*-prod', '-'.repeat(8192)],
      ['*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-prod', '-'.repeat(8192)],
      [`${'*a'.repeat(1000)}*b`, 'a'.repeat(8192)],
      [`${'*?'.repeat(500)}*b`, 'a'.repeat(8192)],
      [`*${'a'.repeat(31)}b*`, 'a'.repeat(8192)],
      [`*${'?'.repeat(2000)}b*`, 'a'.repeat(8192)],
      [`*${'a?'.repeat(3000)}*`, 'b'.repeat(8192)],
    ];
    for (const [pattern, value] of cases) {
      it(`${pattern.length > 40 ? `${pattern.slice(0, 40)}… (${pattern.length} chars)` : pattern} against ${value.length} characters`, () => {
        const match = compileWildcard(pattern);
        assert.equal(match(value), false);
        const ms = elapsedMs(() => match(value));
        assert.ok(ms < 100, `${ms.toFixed(1)} ms`);
      });
    }

    it('grows linearly: 16 times the input costs well under 16 squared times the time', () => {
      const match = compileWildcard(`${'*-'.repeat(50)}*prod`);
      match('-'.repeat(1000)); // warm up the JIT
      const small = Math.max(elapsedMs(() => match('-'.repeat(4096))), 0.05);
      const large = elapsedMs(() => match('-'.repeat(65536)));
      assert.ok(large < small * 64, `4 KiB ${small.toFixed(2)} ms, 64 KiB ${large.toFixed(2)} ms`);
    });
  });
});
