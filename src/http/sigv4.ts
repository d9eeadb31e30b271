import crypto from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { Principal, PrincipalStore } from '../auth/principals';
import {
  IncompleteSignatureException,
  InvalidSignatureException,
  MissingAuthenticationTokenException,
  UnrecognizedClientException,
} from '../errors/kms-errors';
import { locals } from './request-context';
import { signature, SigningKeys } from './signature';

export interface SigV4Options {
  principals: PrincipalStore;
  /** The regions served (QKMS_REGIONS): a credential scoped to any of them is accepted. */
  regions: readonly string[];
  clockSkewSeconds: number;
  now: () => Date;
  /** The service a credential must be scoped to: the route's ('kms', or 'sts' for GetCallerIdentity). */
  service: 'kms' | 'sts';
}

const AUTH = /^AWS4-HMAC-SHA256 (.*)$/;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

/**
 * Verifies the SigV4 Authorization header of every request against its raw bytes (kms-protocol.md
 * §3) before anything else reads the body: the checks (header syntax, scope, time window, body
 * hash) in the order and wording of §3.3, then the signature recomputed over the received request
 * restricted to the client's SignedHeaders list (signature.ts; a unit test holds it to
 * @smithy/signature-v4, the SDKs' signer). The verified principal is left on res.locals for
 * authorization and audit.
 */
export function sigv4(options: SigV4Options) {
  const signingKeys = new SigningKeys();
  return (req: Request, res: Response, next: NextFunction): void => {
    try {
      const { principal, region } = verify(req, options, signingKeys);
      Object.assign(locals(res), { principal, region });
      next();
    } catch (err) {
      next(err);
    }
  };
}

function verify(req: Request, options: SigV4Options, signingKeys: SigningKeys): { principal: Principal; region: string } {
  const header = req.get('authorization');
  if (!header) throw MissingAuthenticationTokenException.create();
  const parsed = parseAuthorization(header);
  // Exactly five components: the signer rebuilds the scope from date, region and service, so
  // anything else in it would go unchecked yet be accepted as signed.
  const scope = parsed.credential.split('/');
  const [accessKeyId, scopeDate, region, service, terminator] = scope;
  if (scope.length !== 5 || !accessKeyId || !scopeDate || !region || !service || terminator !== 'aws4_request') {
    throw new IncompleteSignatureException(`Credential is malformed: expected <access key>/<date>/<region>/${options.service}/aws4_request. Authorization=${header.replace(/Signature=[0-9a-f]*/, 'Signature=…')}`);
  }
  const credential = options.principals.lookup(accessKeyId);
  // Temporary credentials are not issued by this gateway, so any session token is unknown.
  if (!credential || req.get('x-amz-security-token') !== undefined) throw UnrecognizedClientException.create();
  if (service !== options.service) throw new InvalidSignatureException(`Credential should be scoped to correct service: '${options.service}'. `);
  // AWS's words, then what this gateway serves: a client defaulting to another region is the usual cause.
  if (!options.regions.includes(region)) {
    const served = options.regions.length === 1 ? `region '${options.regions[0]}' (QKMS_REGION)` : `regions ${options.regions.map((r) => `'${r}'`).join(', ')} (QKMS_REGIONS)`;
    throw new InvalidSignatureException(`Credential should be scoped to a valid region, not '${region}'. This gateway serves ${served}: set the client's region to ${options.regions.length === 1 ? 'it' : 'one of them'}.`);
  }
  const amzDate = req.get('x-amz-date');
  if (!amzDate) throw new IncompleteSignatureException("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.");
  const signingDate = parseAmzDate(amzDate);
  if (amzDate.slice(0, 8) !== scopeDate) throw new InvalidSignatureException(`Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${scopeDate}' != '${amzDate.slice(0, 8)}', from '${amzDate}'.`);
  checkWindow(signingDate, amzDate, options);
  if (!parsed.signedHeaders.includes('host')) throw new InvalidSignatureException("'Host' must be a 'SignedHeader' in the AWS Authorization.");
  // Every x-amz-* header sent must be signed (SigV4): otherwise X-Amz-Target, i.e. the operation,
  // could be changed on a captured request and replayed within the window.
  const unsigned = Object.keys(req.headers).filter((h) => h.startsWith('x-amz-') && !parsed.signedHeaders.includes(h));
  if (unsigned.length > 0) throw new InvalidSignatureException(`'${unsigned.join("', '")}' must be a 'SignedHeader' in the AWS Authorization.`);

  const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  const bodyHash = crypto.createHash('sha256').update(body).digest('hex');
  const claimedHash = req.get('x-amz-content-sha256');
  // smithy trusts this header as the payload hash: it must be the hash of the bytes received.
  if (claimedHash !== undefined && claimedHash !== bodyHash) throw InvalidSignatureException.mismatch();

  const headers: Array<[string, string]> = [];
  for (const name of parsed.signedHeaders) {
    const values = req.headersDistinct[name];
    if (!values) throw InvalidSignatureException.mismatch(); // signed but not sent
    headers.push([name, values.join(',')]);
  }
  // The route is `POST /` and the query string is not signed: the canonical path is '/', the query empty.
  const request = { method: req.method, path: '/', headers, payloadHash: bodyHash, amzDate };
  const expected = signature(request, signingKeys.get(credential.secretAccessKey, scopeDate, region, service));
  if (!timingSafeEqualHex(expected, parsed.signature)) throw InvalidSignatureException.mismatch();
  return { principal: { accessKeyId, principalArn: credential.principalArn, policy: credential.policy, rateLimitPerSecond: credential.rateLimitPerSecond }, region };
}

function parseAuthorization(header: string): { credential: string; signedHeaders: string[]; signature: string } {
  const m = AUTH.exec(header);
  if (!m) throw new IncompleteSignatureException(`Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization=${header.split(' ')[0]}`);
  const parts: Record<string, string> = {};
  for (const pair of m[1].split(',').map((p) => p.trim())) {
    const eq = pair.indexOf('=');
    if (eq < 0) throw new IncompleteSignatureException(`'${pair}' not a valid key=value pair (missing equal-sign) in Authorization header: '${header.split(',')[0]}…'.`);
    parts[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const missing = ['Credential', 'Signature', 'SignedHeaders'].filter((k) => !parts[k]);
  if (missing.length > 0) {
    throw new IncompleteSignatureException(missing.map((k) => `Authorization header requires '${k}' parameter.`).join(' '));
  }
  const signedHeaders = parts.SignedHeaders.split(';');
  if (signedHeaders.some((h) => h !== h.toLowerCase() || h === '') || [...signedHeaders].sort().join(';') !== parts.SignedHeaders) {
    throw InvalidSignatureException.mismatch(); // canonical form: lowercase, sorted
  }
  return { credential: parts.Credential, signedHeaders, signature: parts.Signature };
}

function parseAmzDate(value: string): Date {
  const m = AMZ_DATE.exec(value);
  const date = m ? new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6])) : undefined;
  // Signed as sent: a date that is not a real one (month 13, 25 o'clock) is refused, not normalised.
  const isReal = date !== undefined && date.getUTCMonth() === +m![2] - 1 && date.getUTCDate() === +m![3] && date.getUTCHours() === +m![4] && date.getUTCMinutes() === +m![5] && date.getUTCSeconds() === +m![6];
  if (!isReal) throw new IncompleteSignatureException(`Date must be in ISO-8601 'basic format'. Got '${value}'. See http://en.wikipedia.org/wiki/ISO_8601`);
  return date;
}

/** Both directions, same window (kms-protocol.md §3.3; QKMS_SIGV4_CLOCK_SKEW_SECONDS, default 5 min). */
function checkWindow(signed: Date, amzDate: string, options: SigV4Options): void {
  const now = options.now();
  const windowMs = options.clockSkewSeconds * 1000;
  const minutes = `${Math.round(options.clockSkewSeconds / 60)} min.`;
  if (signed.getTime() < now.getTime() - windowMs) {
    throw new InvalidSignatureException(`Signature expired: ${amzDate} is now earlier than ${basic(new Date(now.getTime() - windowMs))} (${basic(now)} - ${minutes})`);
  }
  if (signed.getTime() > now.getTime() + windowMs) {
    throw new InvalidSignatureException(`Signature not yet current: ${amzDate} is still later than ${basic(new Date(now.getTime() + windowMs))} (${basic(now)} + ${minutes})`);
  }
}

function basic(d: Date): string {
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

function timingSafeEqualHex(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}
