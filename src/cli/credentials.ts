import fs from 'node:fs';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { NODE_REGION_CONFIG_FILE_OPTIONS, NODE_REGION_CONFIG_OPTIONS, loadConfig, parseKnownFiles } from '@smithy/core/config';
import { DEVELOPMENT_CREDENTIAL } from '../config/load-config';
import { CliError, EXIT } from './cli-errors';
import { isLoopback, type Endpoint } from './endpoint';
import type { Credentials } from './http-caller';

type Env = Record<string, string | undefined>;

export interface CredentialFlags {
  accessKeyId?: string;
  secretAccessKeyFile?: string;
  region?: string;
  isDevelopmentCredential?: boolean;
}

/** The credential and region a remote-mode command signs with, and where they came from. */
export interface Signer {
  credentials: Credentials;
  region: string;
  source: string;
}

/**
 * Variables that mean "the AWS chain is configured here": with one set, qkms never swaps in the
 * development credential, even on loopback, because that would silently ignore the user's choice.
 */
const AWS_CREDENTIAL_VARIABLES = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_PROFILE', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI', 'AWS_CONTAINER_CREDENTIALS_FULL_URI'];

/** Keys of a shared-config profile that make the chain's ini provider produce a credential. */
const PROFILE_CREDENTIAL_KEYS = ['aws_access_key_id', 'role_arn', 'credential_process', 'sso_session', 'sso_start_url', 'web_identity_token_file', 'credential_source', 'login_session'];

/**
 * In order: the flags; QKMS_ACCESS_KEY_ID / QKMS_SECRET_ACCESS_KEY; --dev-credential; the AWS
 * default chain (environment, AWS_PROFILE and ~/.aws, SSO, credential_process, web identity,
 * container and instance metadata). The public development credential is used only when asked
 * for, or when the endpoint is loopback and neither QKMS_* nor the AWS chain is configured; it is
 * then announced on stderr. The secret is never a flag value (it would show in `ps` and history).
 */
export async function resolveSigner(flags: CredentialFlags, env: Env, endpoint: Endpoint, notice: (message: string) => void): Promise<Signer> {
  const explicit = explicitCredentials(flags, env);
  const qkmsRegion = flags.region ?? env.QKMS_REGION;
  if (explicit) return { credentials: explicit.credentials, region: qkmsRegion ?? 'us-east-1', source: explicit.source };
  const awsSource = await configuredAwsSource(env);
  if (flags.isDevelopmentCredential || (!awsSource && isLoopback(endpoint.url))) {
    const why = flags.isDevelopmentCredential ? '--dev-credential' : `nothing else is configured and ${endpoint.url} is loopback`;
    notice(`qkms: signing with the public development credential ${DEVELOPMENT_CREDENTIAL.accessKeyId} (${why}); only a loopback gateway without QKMS_ACCESS_KEY_ID accepts it`);
    return { credentials: { ...DEVELOPMENT_CREDENTIAL }, region: qkmsRegion ?? 'us-east-1', source: 'the development credential' };
  }
  let credentials: Credentials;
  try {
    credentials = await defaultProvider()();
  } catch (err) {
    const found = awsSource ? `from ${awsSource}` : 'none is configured';
    throw new CliError(
      `no credential for ${endpoint.url} (${found}): ${err instanceof Error ? err.message : String(err)}. Set QKMS_ACCESS_KEY_ID and QKMS_SECRET_ACCESS_KEY, AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; --dev-credential for a development gateway`,
      EXIT.usage,
    );
  }
  // The AWS configuration is taken as a whole: its region too, unless QKMS_REGION or --region says otherwise.
  return { credentials, region: qkmsRegion ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? (await profileRegion()), source: awsSource ?? 'the AWS default chain' };
}

function explicitCredentials(flags: CredentialFlags, env: Env): { credentials: Credentials; source: string } | undefined {
  const accessKeyId = flags.accessKeyId ?? env.QKMS_ACCESS_KEY_ID;
  let secretAccessKey = env.QKMS_SECRET_ACCESS_KEY;
  if (flags.secretAccessKeyFile) {
    try {
      secretAccessKey = fs.readFileSync(flags.secretAccessKeyFile, 'utf8').trim();
    } catch (err) {
      throw new CliError(`cannot read --secret-access-key-file: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`, EXIT.usage);
    }
  }
  if (!accessKeyId && !secretAccessKey) return undefined;
  if (!accessKeyId || !secretAccessKey) throw new CliError('give both an access key id and its secret (QKMS_ACCESS_KEY_ID and QKMS_SECRET_ACCESS_KEY, or the flags)', EXIT.usage);
  return { credentials: { accessKeyId, secretAccessKey }, source: flags.accessKeyId ? '--access-key-id' : 'QKMS_ACCESS_KEY_ID' };
}

/**
 * What of the AWS chain is configured, named for messages, or undefined. Only the profile the
 * chain would read counts, and only with credential keys: a [default] holding just a region
 * configures no credential.
 */
async function configuredAwsSource(env: Env): Promise<string | undefined> {
  const variable = AWS_CREDENTIAL_VARIABLES.find((name) => env[name]);
  if (variable) return variable === 'AWS_PROFILE' ? `AWS_PROFILE=${env.AWS_PROFILE}` : variable;
  const profiles = await parseKnownFiles({}).catch(() => ({}) as Record<string, Record<string, string | undefined>>);
  const profile = profiles.default ?? {};
  return PROFILE_CREDENTIAL_KEYS.some((key) => profile[key]) ? "the profile 'default' of the shared AWS config" : undefined;
}

async function profileRegion(): Promise<string> {
  try {
    return await loadConfig(NODE_REGION_CONFIG_OPTIONS, NODE_REGION_CONFIG_FILE_OPTIONS)();
  } catch {
    return 'us-east-1';
  }
}
