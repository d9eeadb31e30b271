import winston from 'winston';

export type Logger = winston.Logger;

/**
 * Field names whose values never reach a log line, whatever the call site passes. Redaction lives
 * in the format so nobody has to remember it (STYLE.md §9).
 */
const REDACTED_KEYS = new Set(
  ['plaintext', 'privatekeyplaintext', 'sharedsecret', 'ciphertextblob', 'privatekeyciphertextblob', 'pin', 'sopin', 'secret', 'secretaccesskey', 'password', 'authorization', 'datakey', 'body', 'importtoken', 'encryptedkeymaterial']
);

export function redact(value: unknown, depth = 0): unknown {
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (Buffer.isBuffer(value)) return '[buffer]';
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = REDACTED_KEYS.has(k.toLowerCase()) ? '[redacted]' : redact(v, depth + 1);
  }
  return out;
}

const redactFormat = winston.format((info) => {
  for (const key of Object.keys(info)) {
    if (REDACTED_KEYS.has(key.toLowerCase())) info[key] = '[redacted]';
    else info[key] = redact(info[key]);
  }
  return info;
});

export function createLogger(options: { level: string; stream?: NodeJS.WritableStream; silent?: boolean; worker?: number }): Logger {
  const transport = options.stream
    ? new winston.transports.Stream({ stream: options.stream })
    : new winston.transports.Console();
  return winston.createLogger({
    level: options.level,
    silent: options.silent,
    // With QKMS_WORKERS, every line says which worker wrote it.
    ...(options.worker !== undefined && { defaultMeta: { worker: options.worker } }),
    format: winston.format.combine(redactFormat(), winston.format.timestamp(), winston.format.errors({ stack: true }), winston.format.json()),
    transports: [transport],
  });
}
