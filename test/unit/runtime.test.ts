import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { supportedNodeLines, unsupportedNode } from '../../src/runtime';

const ROOT = path.resolve(__dirname, '../..');

describe('Node.js release lines (src/runtime.ts)', () => {
  it('reads the tested lines from package.json\'s engines, which names the documented default (.nvmrc)', () => {
    const lines = supportedNodeLines(path.join(ROOT, 'package.json'));
    assert.deepEqual(lines, [22, 24]);
    assert.ok(lines.includes(Number(fs.readFileSync(path.join(ROOT, '.nvmrc'), 'utf8').trim())));
    assert.deepEqual(supportedNodeLines(), lines, 'the gateway finds package.json beside src/ (and dist/)');
  });

  it('says nothing on a tested line, warns of an older line (end of life) and of a newer, untested one', () => {
    assert.equal(unsupportedNode('24.22.3', [22, 24]), undefined);
    assert.equal(unsupportedNode('22.9.0', [22, 24]), undefined);
    assert.match(unsupportedNode('20.20.2', [22, 24])!, /^Node\.js 20\.20\.2 is not a supported release line \(tested: 22, 24\).*end of life/);
    assert.match(unsupportedNode('23.11.0', [22, 24])!, /not a supported release line \(tested: 22, 24\): a short-lived line between them, not tested/);
    assert.match(unsupportedNode('26.12.1', [22, 24])!, /newer than the release lines this gateway is tested on \(22, 24\)/);
  });

  it('compares with nothing when package.json is missing or says nothing', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-runtime-'));
    assert.deepEqual(supportedNodeLines(path.join(dir, 'package.json')), []);
    fs.writeFileSync(path.join(dir, 'package.json'), '{"name":"x"}');
    assert.deepEqual(supportedNodeLines(path.join(dir, 'package.json')), []);
    assert.equal(unsupportedNode('20.0.0', []), undefined);
    fs.rmSync(dir, { recursive: true });
  });
});
