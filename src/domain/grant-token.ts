import crypto from 'node:crypto';
import { InvalidGrantTokenException } from '../errors/kms-errors';

/**
 * Grant tokens: `qgt1.` + base64url(16-byte grant id || 32-byte secret). The store keeps only
 * SHA-256(secret), so a leaked database yields no usable token. Grants are issued by CreateGrant
 * (the authorization issue); until a grant exists every well-formed token is unknown.
 */
const PREFIX = 'qgt1.';
const TOKEN = /^qgt1\.[A-Za-z0-9_-]{64}$/;

export function parseGrantToken(token: string): { grantId: string; secret: Buffer } {
  if (!TOKEN.test(token)) throw InvalidGrantTokenException.malformed();
  const raw = Buffer.from(token.slice(PREFIX.length), 'base64url');
  if (raw.length !== 48) throw InvalidGrantTokenException.malformed();
  return { grantId: raw.subarray(0, 16).toString('hex'), secret: raw.subarray(16) };
}

export function formatGrantToken(grantId: string, secret: Buffer): string {
  return PREFIX + Buffer.concat([Buffer.from(grantId, 'hex'), secret]).toString('base64url');
}

/** Every token in GrantTokens must name an existing grant, else InvalidGrantTokenException. */
export async function assertGrantTokens(tokens: string[] | undefined, lookup: (grantId: string) => Promise<Buffer | undefined>): Promise<void> {
  for (const token of tokens ?? []) {
    const { grantId, secret } = parseGrantToken(token);
    const stored = await lookup(grantId);
    const presented = crypto.createHash('sha256').update(secret).digest();
    if (!stored || stored.length !== presented.length || !crypto.timingSafeEqual(stored, presented)) {
      throw InvalidGrantTokenException.unknown();
    }
  }
}
