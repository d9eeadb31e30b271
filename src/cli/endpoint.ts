import { CliError, EXIT } from './cli-errors';

type Env = Record<string, string | undefined>;

/** The gateway a remote-mode command talks to, and where that choice came from (for messages). */
export interface Endpoint {
  url: string;
  source: string;
}

/**
 * Where the endpoint comes from, first match wins. QKMS_ENDPOINT is ours; the two AWS variables
 * are the ones every current AWS SDK and the AWS CLI read, so a shell already pointed at QKMS for
 * those tools points qkms there too.
 */
const ENDPOINT_VARIABLES = ['QKMS_ENDPOINT', 'AWS_ENDPOINT_URL_KMS', 'AWS_ENDPOINT_URL'] as const;

/** --endpoint, else the first variable set; undefined means direct mode. */
export function resolveEndpoint(flag: string | undefined, env: Env): Endpoint | undefined {
  if (flag !== undefined) return { url: checkedUrl(flag, '--endpoint'), source: '--endpoint' };
  for (const name of ENDPOINT_VARIABLES) {
    const value = env[name];
    if (value) return { url: checkedUrl(value, name), source: name };
  }
  return undefined;
}

function checkedUrl(endpoint: string, source: string): string {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new CliError(`${source} must be a URL such as http://127.0.0.1:8080, not '${endpoint}'`, EXIT.usage);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError(`${source} must be an http:// or https:// URL`, EXIT.usage);
  return url.origin;
}

/** The loopback names the gateway itself treats as loopback (load-config.ts), as URL hostnames. */
export function isLoopback(url: string): boolean {
  return /^(127\.\d+\.\d+\.\d+|\[::1\]|localhost)$/.test(new URL(url).hostname);
}
