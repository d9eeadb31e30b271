#!/usr/bin/env node
'use strict';
// The `qkms` command (package.json "bin"; `npx qkms`, `npm link`). It runs the compiled CLI in
// dist/ when dist/ is at least as new as every source file, else the TypeScript source through
// tsx: no rebuild per call, and never a stale build after an edit or a `git pull`. A package
// without src/ (an install) always runs dist/. Plain JavaScript, as it must run before any build.
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const src = path.join(root, 'src');
const dist = path.join(root, 'dist');

/** The first source file whose compiled twin is missing or older, or undefined when dist is current. */
function staleSource(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      const stale = staleSource(file);
      if (stale) return stale;
    } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
      const compiled = path.join(dist, path.relative(src, file)).replace(/\.ts$/, '.js');
      let compiledMs;
      try {
        compiledMs = fs.statSync(compiled).mtimeMs;
      } catch {
        return file;
      }
      if (compiledMs < fs.statSync(file).mtimeMs) return file;
    }
  }
  return undefined;
}

function entryPoint() {
  const compiled = path.join(dist, 'cli', 'qkms.js');
  if (!fs.existsSync(src)) return compiled;
  const stale = staleSource(src);
  if (!stale) return compiled;
  try {
    require('tsx/cjs');
  } catch {
    if (!fs.existsSync(compiled)) {
      process.stderr.write('qkms: neither a build (dist/) nor tsx to run the source: run `npm ci` or `npm run build`\n');
      process.exit(3);
    }
    process.stderr.write(`qkms: dist/ is older than ${path.relative(root, stale)} and tsx is not installed: running the old build (\`npm run build\` refreshes it)\n`);
    return compiled;
  }
  return path.join(src, 'cli', 'qkms.ts');
}

const { runCli } = require(entryPoint());
runCli(process.argv.slice(2), process.env).then((code) => {
  process.exitCode = code;
});
