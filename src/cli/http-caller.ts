import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { Signer } from './credentials';
import type { Endpoint } from './endpoint';
import { KmsCallError, type KmsCaller } from './kms-caller';

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** Answers about the signature itself, where naming the credential's origin is the useful hint. */
const SIGNATURE_ERRORS = new Set(['UnrecognizedClientException', 'InvalidSignatureException', 'IncompleteSignatureException', 'MissingAuthenticationTokenException', 'ExpiredTokenException']);

/** Cannot reach the gateway at all (refused, DNS, TLS): exit code 3, not a KMS error. */
export class EndpointError extends Error {}

/**
 * KMS over HTTP(S) as the AWS SDKs send it: POST / with X-Amz-Target, signed with SigV4 (service
 * kms) by @smithy/signature-v4, the signer the SDKs themselves use. fetch keeps connections alive.
 */
export class HttpCaller implements KmsCaller {
  private readonly signer: SignatureV4;
  private readonly url: URL;

  constructor(
    private readonly endpoint: Endpoint,
    private readonly signedWith: Signer,
  ) {
    this.url = new URL(endpoint.url);
    this.signer = new SignatureV4({ credentials: signedWith.credentials, region: signedWith.region, service: 'kms', sha256: Hash.bind(null, 'sha256') });
  }

  async call<T = Record<string, any>>(operation: string, input: object): Promise<T> {
    const body = JSON.stringify(input);
    const request = new HttpRequest({
      method: 'POST',
      protocol: this.url.protocol,
      hostname: this.url.hostname,
      port: this.url.port ? Number(this.url.port) : undefined,
      path: '/',
      headers: { host: this.url.host, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': `TrentService.${operation}` },
      body,
    });
    const signed = await this.signer.sign(request);
    let response: Response;
    try {
      const { host: _host, ...headers } = signed.headers; // fetch sets Host itself, to the same value
      response = await fetch(new URL('/', this.url), { method: 'POST', headers, body });
    } catch (err) {
      const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : String(err);
      throw new EndpointError(`cannot reach the gateway at ${this.url.origin} (from ${this.endpoint.source}): ${cause}`);
    }
    const text = await response.text();
    const json = parseJson(text);
    if (response.ok) return (json ?? {}) as T;
    const type = typeof json?.__type === 'string' ? json.__type.split('#').pop()! : `HTTP ${response.status}`;
    const message = typeof json?.message === 'string' ? json.message : '';
    const hint = SIGNATURE_ERRORS.has(type) ? ` (signed with ${this.signedWith.source}, region ${this.signedWith.region})` : '';
    throw new KmsCallError(type, message + hint, response.status);
  }

  async close(): Promise<void> {}
}

function parseJson(text: string): Record<string, any> | undefined {
  if (!text) return undefined;
  try {
    return JSON.parse(text) as Record<string, any>;
  } catch {
    return undefined;
  }
}
