import crypto from 'node:crypto';

/** What a SigV4 signature covers, as received (sigv4.ts has checked the rest). */
export interface SignedRequest {
  method: string;
  /** The canonical URI: already normalised and escaped. */
  path: string;
  /** The signed headers, names lower-case and sorted, each value as sent (several joined with ','). */
  headers: ReadonlyArray<readonly [string, string]>;
  /** Hex SHA-256 of the body. */
  payloadHash: string;
  /** X-Amz-Date, ISO 8601 basic (its first 8 characters are the scope's date). */
  amzDate: string;
}

/**
 * The AWS Signature Version 4 of a request without a query string (AWS General Reference, "Create a
 * signed AWS API request"): canonical request, string to sign, HMAC under the signing key. Hex.
 */
export function signature(request: SignedRequest, signingKey: { key: Buffer; scope: string }): string {
  const canonicalHeaders = request.headers.map(([name, value]) => `${name}:${value.trim().replace(/\s+/g, ' ')}\n`).join('');
  const signedHeaders = request.headers.map(([name]) => name).join(';');
  const canonicalRequest = `${request.method}\n${request.path}\n\n${canonicalHeaders}\n${signedHeaders}\n${request.payloadHash}`;
  const hashed = crypto.createHash('sha256').update(canonicalRequest).digest('hex');
  const stringToSign = `AWS4-HMAC-SHA256\n${request.amzDate}\n${signingKey.scope}\n${hashed}`;
  return crypto.createHmac('sha256', signingKey.key).update(stringToSign).digest('hex');
}

/** Signing keys kept per secret and scope: each is four HMACs to derive, and a day's requests share one. */
export class SigningKeys {
  private readonly keys = new Map<string, { key: Buffer; scope: string }>();

  get(secretAccessKey: string, date: string, region: string, service: string): { key: Buffer; scope: string } {
    const scope = `${date}/${region}/${service}/aws4_request`;
    const id = `${secretAccessKey}\n${scope}`;
    let found = this.keys.get(id);
    if (!found) {
      const hmac = (key: Buffer | string, data: string) => crypto.createHmac('sha256', key).update(data).digest();
      found = { key: hmac(hmac(hmac(hmac(`AWS4${secretAccessKey}`, date), region), service), 'aws4_request'), scope };
      // Bounded: a day brings one new key per credential; a rotated secret or a flood of dates does not grow it for ever.
      if (this.keys.size >= MAX_KEYS) this.keys.clear();
      this.keys.set(id, found);
    }
    return found;
  }
}

const MAX_KEYS = 1000;
