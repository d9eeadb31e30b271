import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { RequestListener } from 'node:http';
import { PROBE_PATHS } from './app';
import type { Config } from './config/load-config';

/**
 * HTTP, or HTTPS when QKMS_TLS_CERT/KEY are set; with QKMS_TLS_CLIENT_CA the TLS handshake
 * requires a client certificate from that CA (no certificate, no request — SigV4 still applies).
 */
export function createServer(config: Config, app: RequestListener): http.Server {
  if (!config.tls) return http.createServer(app);
  const { certFile, keyFile, clientCaFile } = config.tls;
  return https.createServer(
    {
      cert: fs.readFileSync(certFile),
      key: fs.readFileSync(keyFile),
      minVersion: 'TLSv1.2',
      ...(clientCaFile && { ca: fs.readFileSync(clientCaFile), requestCert: true, rejectUnauthorized: true }),
    },
    app,
  );
}

/**
 * The probe listener (QKMS_PROBE_PORT): plain HTTP whatever the KMS port's TLS, because kubelet
 * cannot present a client certificate. It hands `app` only GET and HEAD of /health, /ready and
 * /metrics, and answers anything else 404 itself, so neither the KMS API nor the console is
 * reachable through it and the KMS port keeps its client-certificate check.
 */
export function createProbeServer(app: RequestListener): http.Server {
  return http.createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if ((req.method === 'GET' || req.method === 'HEAD') && PROBE_PATHS.has(path)) return app(req, res);
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found: this port serves only GET /health, /ready and /metrics\n');
  });
}
