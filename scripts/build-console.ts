import fs from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

const ROOT = path.resolve(__dirname, '..');
const CONSOLE_OUT_DIR = path.join(ROOT, 'dist', 'console');

/**
 * Bundles the web console (console/) into dist/console for the gateway to serve at /console:
 * one script with the SigV4 signer inside, its stylesheet and the page. Run by `npm run build`
 * (so `npm start`, the image and the tests have it); nothing is fetched at runtime.
 */
export async function buildConsole(outDir: string = CONSOLE_OUT_DIR): Promise<void> {
  fs.mkdirSync(outDir, { recursive: true });
  await build({
    entryPoints: [path.join(ROOT, 'console/src/main.ts')],
    outfile: path.join(outDir, 'console.js'),
    bundle: true,
    platform: 'browser',
    format: 'iife',
    target: ['es2020'],
    minify: true,
    legalComments: 'eof', // the bundled libraries' licence notices travel with them
    logLevel: 'warning',
  });
  for (const file of ['index.html', 'console.css']) fs.copyFileSync(path.join(ROOT, 'console', file), path.join(outDir, file));
}

if (require.main === module) {
  buildConsole().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
