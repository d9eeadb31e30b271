import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

const SRC = path.resolve(__dirname, '../../src');
const files = (dir: string): string[] =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));

/** STYLE.md §1: imports point downward (http -> operations -> domain -> hsm); pkcs11js only in hsm/pkcs11. */
describe('Layering', () => {
  const sources = files(SRC).map((f) => ({ rel: path.relative(SRC, f), text: fs.readFileSync(f, 'utf8') }));
  const imports = (text: string) => [...text.matchAll(/from '([^']+)'/g)].map((m) => m[1]);

  it('only src/hsm/pkcs11/ imports pkcs11js', () => {
    const offenders = sources.filter((s) => imports(s.text).includes('pkcs11js') && !s.rel.startsWith('hsm/pkcs11/'));
    assert.deepEqual(offenders.map((s) => s.rel), []);
  });

  it('only main.ts reads process.env (embedded-token sets SOFTHSM2_CONF for the module it loads)', () => {
    const entryPoints = ['main.ts', 'cli/qkms.ts', 'hsm/pkcs11/embedded-token.ts'];
    const offenders = sources.filter((s) => /process\.env\b/.test(s.text) && !entryPoints.includes(s.rel));
    assert.deepEqual(offenders.map((s) => s.rel), []);
  });

  it('domain and hsm never import http or operations; operations never import http', () => {
    const rank = (rel: string) => ['hsm', 'domain', 'operations', 'http'].indexOf(rel.split('/')[0]);
    const offenders = sources.flatMap((s) =>
      imports(s.text)
        .filter((i) => i.startsWith('.'))
        .map((i) => path.relative(SRC, path.resolve(SRC, path.dirname(s.rel), i)))
        .filter((target) => rank(s.rel) >= 0 && rank(target) > rank(s.rel))
        .map((target) => `${s.rel} -> ${target}`),
    );
    assert.deepEqual(offenders, []);
  });
});
