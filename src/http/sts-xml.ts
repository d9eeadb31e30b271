import type { Response } from 'express';

/** The namespace of every STS response and error document (STS API reference, 2011-06-15). */
export const STS_NAMESPACE = 'https://sts.amazonaws.com/doc/2011-06-15/';

/**
 * Text for an XML element. Client-supplied text (an unknown Action) reaches error messages, so
 * markup is escaped and characters XML 1.0 cannot carry at all are replaced, not passed on.
 */
export function xmlText(value: string): string {
  return value
    .replace(/[^\x09\x0A\x0D\x20-\uD7FF\uE000-\uFFFD]/gu, '\uFFFD')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

/** STS answers `text/xml` (what botocore and the JS SDK parse); x-amzn-RequestId is already set. */
export function sendXml(res: Response, status: number, body: string): void {
  res.status(status).setHeader('Content-Type', 'text/xml');
  res.end(Buffer.from(`<?xml version="1.0" encoding="UTF-8"?>\n${body}`, 'utf8'));
}
