import crypto from 'node:crypto';
import { InvalidGrantTokenException } from '../errors/kms-errors';

/**
 * Grant tokens: `qgt1.` + base64url(32-byte grant id || 32-byte secret). The store keeps only
 * SHA-256(secret), so a leaked database yields no usable token. A grant may have several tokens
 * (CreateGrant with the same Name returns the same GrantId and a new token).
 */
const PREFIX = 'qgt1.';
const TOKEN = /^qgt1\.[A-Za-z0-9_-]{86}$/;

export function parseGrantToken(token: string): { grantId: string; secret: Buffer } {
  if (!TOKEN.test(token)) throw InvalidGrantTokenException.malformed();
  const raw = Buffer.from(token.slice(PREFIX.length), 'base64url');
  if (raw.length !== 64) throw InvalidGrantTokenException.malformed();
  return { grantId: raw.subarray(0, 32).toString('hex'), secret: raw.subarray(32) };
}

export function formatGrantToken(grantId: string, secret: Buffer): string {
  return PREFIX + Buffer.concat([Buffer.from(grantId, 'hex'), secret]).toString('base64url');
}

export function hashSecret(secret: Buffer): Buffer {
  return crypto.createHash('sha256').update(secret).digest();
}

/** The grant a token names, if the token is one of its tokens; InvalidGrantTokenException otherwise. */
export async function grantOfToken(token: string, hashesOf: (grantId: string) => Promise<Buffer[]>): Promise<string> {
  const { grantId, secret } = parseGrantToken(token);
  const presented = hashSecret(secret);
  const isKnown = (await hashesOf(grantId)).some((h) => h.length === presented.length && crypto.timingSafeEqual(h, presented));
  if (!isKnown) throw InvalidGrantTokenException.unknown();
  return grantId;
}
