import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { RequestListener } from 'node:http';
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
