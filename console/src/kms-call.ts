import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';

/** Held by the page in memory only: never stored, never sent; a reload signs out. */
export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface SentRequest {
  method: 'POST';
  url: string;
  headers: Record<string, string>;
  body: string;
}

export interface KmsResult {
  request: SentRequest;
  status: number;
  headers: Record<string, string>;
  text: string;
  json?: Record<string, unknown>;
  /** The KMS error (`__type` and `message`), when the status is not 2xx. */
  error?: { type: string; message: string };
}

const JSON_CONTENT_TYPE = 'application/x-amz-json-1.1';

/**
 * One KMS call as any AWS SDK makes it: POST / on this origin, X-Amz-Target, the JSON body,
 * SigV4-signed (service `kms`) by @smithy/signature-v4 in the browser. Returns what was sent,
 * headers and all, so the page can show it.
 */
export async function kmsCall(credentials: Credentials, region: string, operation: string, input: object): Promise<KmsResult> {
  const url = new URL('/', window.location.origin);
  const body = JSON.stringify(input);
  const signer = new SignatureV4({ credentials, region, service: 'kms', sha256: Sha256 });
  const signed = await signer.sign(
    new HttpRequest({
      method: 'POST',
      protocol: url.protocol,
      hostname: url.hostname,
      port: url.port ? Number(url.port) : undefined,
      path: '/',
      headers: { host: url.host, 'content-type': JSON_CONTENT_TYPE, 'x-amz-target': `TrentService.${operation}` },
      body,
    }),
  );
  const request: SentRequest = { method: 'POST', url: url.href, headers: { ...signed.headers }, body };
  // The browser sets Host itself (a forbidden header name); it is the same url.host that was signed.
  const { host: _host, ...sendable } = signed.headers;
  const response = await fetch(url, { method: 'POST', headers: sendable, body, credentials: 'omit', cache: 'no-store', referrerPolicy: 'no-referrer' });
  const text = await response.text();
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => (headers[name] = value));
  const json = parseJson(text);
  const result: KmsResult = { request, status: response.status, headers, text, json };
  if (!response.ok) result.error = errorOf(json, headers);
  return result;
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** `__type` may carry a namespace (`com.amazonaws.kms#NotFoundException`); AWS clients strip it. */
function errorOf(json: Record<string, unknown> | undefined, headers: Record<string, string>): { type: string; message: string } {
  const raw = String(json?.__type ?? headers['x-amzn-errortype'] ?? 'UnknownError');
  const message = json?.message ?? json?.Message ?? '';
  return { type: raw.split('#').pop()!.split(':')[0], message: String(message) };
}

/** Follows NextMarker while Truncated, gathering one list member of every page. */
export async function paginate<T>(credentials: Credentials, region: string, operation: string, member: string): Promise<T[]> {
  const items: T[] = [];
  let marker: string | undefined;
  do {
    const result = await kmsCall(credentials, region, operation, marker ? { Marker: marker } : {});
    if (result.error) throw new KmsCallError(operation, result.error);
    items.push(...((result.json?.[member] as T[] | undefined) ?? []));
    marker = result.json?.Truncated ? String(result.json.NextMarker) : undefined;
  } while (marker);
  return items;
}

export class KmsCallError extends Error {
  constructor(
    readonly operation: string,
    readonly kms: { type: string; message: string },
  ) {
    super(`${operation}: ${kms.type}${kms.message ? `: ${kms.message}` : ''}`);
  }
}
