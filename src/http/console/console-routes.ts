import fs from 'node:fs/promises';
import path from 'node:path';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { OperationForm } from './operation-forms';

interface ConsoleOptions {
  /** Where `npm run build` put the bundled console (scripts/build-console.ts). */
  assetsDir: string;
  /** The gateway's SigV4 region: the browser signs for it. */
  region: string;
  forms: OperationForm[];
}

/** The bundle's files, by URL name. A fixed list: no request path ever reaches the file system. */
const ASSETS: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'console.js': 'text/javascript; charset=utf-8',
  'console.css': 'text/css; charset=utf-8',
};

/**
 * Self only, nothing inline: the page may load its own script and style and talk to this origin
 * (the KMS endpoint `POST /`), nothing else; no framing, no forms posted anywhere, no <base>.
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': CONTENT_SECURITY_POLICY,
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Permissions-Policy': 'camera=(), microphone=(), geolocation=(), payment=(), usb=()',
  // The page shows data keys: nothing of it belongs in a cache.
  'Cache-Control': 'no-store',
};

/**
 * The web console under /console: static files and the operations' form descriptions. It holds
 * no authority of its own: every KMS call the page makes is SigV4-signed in the browser and
 * goes to `POST /` like any SDK's, so nothing here touches the KMS endpoint. Mounted before
 * request-context, so page loads are neither audited nor answered with KMS error bodies.
 */
export function consoleRoutes(options: ConsoleOptions): express.Router {
  const router = express.Router({ strict: true });
  const formsJson = JSON.stringify({ region: options.region, operations: options.forms });
  router.use((_req, res, next) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
    next();
  });
  router.get('/', (req, res, next) => {
    // /console -> /console/, so the page's relative asset URLs resolve under /console/.
    if (!req.originalUrl.split('?')[0].endsWith('/')) return res.redirect(301, `${req.baseUrl}/`);
    sendAsset(options.assetsDir, 'index.html', res).catch(next);
  });
  router.get('/operations.json', (_req, res) => {
    res.type('application/json').send(formsJson);
  });
  router.use((req, res, next) => {
    // The raw path against a fixed list: nothing is URL-decoded (a malformed escape like /console/%
    // cannot fail), and no request path ever reaches the file system.
    const file = req.path.slice(1);
    if ((req.method !== 'GET' && req.method !== 'HEAD') || !Object.hasOwn(ASSETS, file) || file === 'index.html') return notFound(res);
    sendAsset(options.assetsDir, file, res).catch(next);
  });
  router.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    // A missing bundle is an install problem, told plainly; the KMS error handler is not involved.
    const isMissing = (err as NodeJS.ErrnoException)?.code === 'ENOENT';
    res.status(isMissing ? 404 : 500).type('text/plain').send(isMissing ? 'The console is not built: run `npm run build`.\n' : 'Internal error.\n');
  });
  return router;
}

async function sendAsset(dir: string, file: string, res: Response): Promise<void> {
  const body = await fs.readFile(path.join(dir, file));
  res.status(200).setHeader('Content-Type', ASSETS[file]);
  res.end(body);
}

function notFound(res: Response): void {
  res.status(404).type('text/plain').send('Not found.\n');
}
