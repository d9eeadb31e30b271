import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');

/**
 * bin/qkms.js copied into a throw-away package whose src/cli/qkms.ts and dist/cli/qkms.js each
 * export a runCli that names itself and answers an exit code: which one ran shows on stdout. The
 * package's node_modules is the repository's, so tsx is the real one.
 */
function fakePackage() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-launcher-'));
  fs.mkdirSync(path.join(root, 'bin'));
  fs.copyFileSync(path.join(ROOT, 'bin/qkms.js'), path.join(root, 'bin/qkms.js'));
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(root, 'node_modules'));
  const write = (file: string, text: string, mtime: Date) => {
    fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    fs.writeFileSync(path.join(root, file), text);
    fs.utimesSync(path.join(root, file), mtime, mtime);
  };
  const runCli = (name: string, typed: boolean) =>
    `exports.runCli = async (argv${typed ? ': string[]' : ''}) => { process.stdout.write('${name} ' + argv.join(' ')); return 4; };\n`;
  const earlier = new Date(Date.now() - 60000);
  const later = new Date(Date.now() - 30000);
  write('src/cli/qkms.ts', runCli('src', true), earlier);
  write('src/cli/helper.ts', 'export const x = 1;\n', earlier);
  write('dist/cli/qkms.js', runCli('dist', false), later);
  write('dist/cli/helper.js', 'exports.x = 1;\n', later);
  const run = () => spawnSync(process.execPath, [path.join(root, 'bin/qkms.js'), 'keys', 'list'], { cwd: os.tmpdir(), encoding: 'utf8' });
  return { root, write, run, later: new Date(Date.now() - 1000) };
}

describe('bin/qkms.js, the launcher', function () {
  this.timeout(60000);
  let pkg: ReturnType<typeof fakePackage>;
  beforeEach(() => {
    pkg = fakePackage();
  });
  afterEach(() => fs.rmSync(pkg.root, { recursive: true, force: true }));

  it('runs dist/ when every source file has a compiled twin at least as new, with the arguments and exit code', () => {
    const run = pkg.run();
    assert.equal(run.stdout, 'dist keys list');
    assert.equal(run.status, 4);
    assert.equal(run.stderr, '');
  });

  it('runs the source through tsx when a source file changed after the build', () => {
    pkg.write('src/cli/helper.ts', 'export const x = 2;\n', pkg.later);
    const run = pkg.run();
    assert.equal(run.stdout, 'src keys list', run.stderr);
    assert.equal(run.status, 4);
  });

  it('runs the source through tsx when a source file was never built', () => {
    pkg.write('src/cli/new-command.ts', 'export {};\n', new Date(Date.now() - 90000));
    assert.equal(pkg.run().stdout, 'src keys list');
  });

  it('runs dist/ in a package without src/ (an install)', () => {
    fs.rmSync(path.join(pkg.root, 'src'), { recursive: true });
    assert.equal(pkg.run().stdout, 'dist keys list');
  });

  it('without tsx, runs the old build and says so; with neither, exits 3 with what to do', () => {
    fs.rmSync(path.join(pkg.root, 'node_modules'));
    pkg.write('src/cli/helper.ts', 'export const x = 2;\n', pkg.later);
    const old = pkg.run();
    assert.equal(old.stdout, 'dist keys list');
    assert.match(old.stderr, /^qkms: dist\/ is older than src\/cli\/helper\.ts and tsx is not installed/);
    fs.rmSync(path.join(pkg.root, 'dist'), { recursive: true });
    const none = pkg.run();
    assert.equal(none.status, 3);
    assert.match(none.stderr, /neither a build \(dist\/\) nor tsx/);
  });
});
