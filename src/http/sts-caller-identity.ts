import crypto from 'node:crypto';

/** GetCallerIdentityResult's members, AWS's names (STS API reference, GetCallerIdentity). */
export interface CallerIdentity {
  UserId: string;
  Account: string;
  Arn: string;
}

const ARN = /^arn:([^:]+):(iam|sts)::(\d{12}):(.+)$/;

/**
 * Who a signed principal is, as STS would say it. Arn is the principal's ARN and Account the
 * account in it (for the admin and every principal of the gateway's own account, QKMS_ACCOUNT_ID;
 * AWS names the account that owns the caller, so a credentials-file principal of another account
 * gets its own). UserId follows AWS's forms: the account id for root; `<account>:<name>` for a
 * federated user; otherwise AWS's unique id, which QKMS does not store, so one is derived from the
 * ARN (`AIDA`/`AROA` + 17 characters of its SHA-256, and `:<session>` for an assumed role): stable
 * across restarts and replicas and the same for every access key of one principal, as AWS's is.
 * The access key id was not chosen: AWS never answers it, and it differs between keys of one user.
 */
export function callerIdentity(principalArn: string): CallerIdentity {
  const m = ARN.exec(principalArn);
  // The principal store only holds ARNs of this form (principals.ts); a defect, not the client's.
  if (!m) throw new Error('principal ARN is not an IAM or STS ARN');
  const [, partition, service, account, resource] = m;
  return { UserId: userId(partition, service, account, resource), Account: account, Arn: principalArn };
}

function userId(partition: string, service: string, account: string, resource: string): string {
  if (resource === 'root') return account;
  const [kind, ...rest] = resource.split('/');
  if (service === 'sts' && kind === 'assumed-role' && rest.length >= 2) {
    const session = rest[rest.length - 1];
    const role = rest.slice(0, -1).join('/');
    return `${uniqueId('AROA', `arn:${partition}:iam::${account}:role/${role}`)}:${session}`;
  }
  if (service === 'sts' && kind === 'federated-user' && rest.length >= 1) return `${account}:${rest.join('/')}`;
  if (service === 'iam' && kind === 'role') return uniqueId('AROA', `arn:${partition}:iam::${account}:${resource}`);
  return uniqueId('AIDA', `arn:${partition}:${service}::${account}:${resource}`);
}

/** AWS unique ids are a 4-letter type prefix and 17 upper-case letters and digits (IAM identifiers). */
function uniqueId(prefix: 'AIDA' | 'AROA', arn: string): string {
  return prefix + base32(crypto.createHash('sha256').update(arn).digest()).slice(0, 17);
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function base32(bytes: Buffer): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out;
}
