import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '../../..');

/** Every file under deploy/, recursively. */
function deployFiles(dir = path.join(ROOT, 'deploy')): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? deployFiles(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}

// The values QKMS_ARN_FORMAT is given in a text: as env-file line, YAML map entry or Kubernetes
// `name:`/`value:` pair.
function arnFormatsSet(text: string): string[] {
  const forms = [/QKMS_ARN_FORMAT["']?\s*[:=]\s*["']?([\w-]+)/g, /name:\s*["']?QKMS_ARN_FORMAT["']?\s*\n\s*value:\s*["']?([\w-]+)/g];
  return forms.flatMap((re) => [...text.matchAll(re)].map((m) => m[1]));
}

/**
 * The default verenc ARNs strand AWS Encryption SDK messages (README "ARNs"), so every template a
 * deployment starts from sets aws; a new template that configures the gateway must say so too.
 */
describe('Deployment templates and the ARN format', () => {
  it('config/gateway.example.env sets QKMS_ARN_FORMAT=aws', () => {
    const text = fs.readFileSync(path.join(ROOT, 'config/gateway.example.env'), 'utf8');
    assert.match(text, /^QKMS_ARN_FORMAT=aws$/m);
  });

  it('deploy/ sets QKMS_ARN_FORMAT=aws wherever it configures the gateway, and never another value', () => {
    const texts = deployFiles().map((f) => ({ file: path.relative(ROOT, f), text: fs.readFileSync(f, 'utf8') }));
    const other = texts.flatMap(({ file, text }) => arnFormatsSet(text).filter((v) => v !== 'aws').map((v) => `${file}: ${v}`));
    assert.deepEqual(other, []);
    const configuring = texts.filter(({ text }) => /\bQKMS_[A-Z_]+/.test(text)).map(({ file }) => file);
    const settingAws = texts.filter(({ text }) => arnFormatsSet(text).includes('aws'));
    assert.ok(configuring.length === 0 || settingAws.length > 0, `${configuring.join(', ')} configure the gateway, none sets QKMS_ARN_FORMAT=aws`);
  });
});
