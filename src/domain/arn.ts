import type { ArnFormat } from '../config/load-config';

/** The account, region and ARN style one gateway serves (config), and the ARNs it prints. */
export interface ArnScope {
  accountId: string;
  region: string;
  format: ArnFormat;
}

/** verenc: the seed's `arn:verenc:<account>:key/<id>`; aws: `arn:aws:kms:<region>:<account>:key/<id>`. */
export function keyArn(scope: ArnScope, keyId: string): string {
  return resourceArn(scope, `key/${keyId}`);
}

/** Alias ARNs carry the full alias name: `…:alias/<name>` (kms-protocol.md §4). */
export function aliasArn(scope: ArnScope, aliasName: string): string {
  return resourceArn(scope, aliasName);
}

function resourceArn(scope: ArnScope, resource: string): string {
  return scope.format === 'verenc'
    ? `arn:verenc:${scope.accountId}:${resource}`
    : `arn:aws:kms:${scope.region}:${scope.accountId}:${resource}`;
}
