import { aliasArn, keyArn } from '../domain/arn';
import { grantOfToken } from '../domain/grant-token';
import type { KeyRecord } from '../domain/key-repository';
import { parseKeyRef } from '../domain/key-ref';
import { InvalidArnException, NotFoundException } from '../errors/kms-errors';
import { authorize, type RequestFacts } from './authorize';
import type { OperationContext } from './context';

export interface ResolvedKey {
  key: KeyRecord;
  arn: string;
}

/**
 * KeyId -> key record (kms-protocol.md §4): key id, key ARN of either form, and — where the
 * operation accepts them — alias name or alias ARN. Errors in AWS's order and wording. Every key
 * an operation touches comes through here, so this is where `action` is authorized.
 */
export async function resolveKey(
  input: string,
  ctx: OperationContext,
  options: { allowAlias: boolean; action: string; facts?: RequestFacts },
): Promise<ResolvedKey> {
  const { scope, keys } = ctx.deps;
  const ref = parseKeyRef(input);
  if (ref.kind === 'invalid') throw NotFoundException.invalidKeyId(input);
  if (ref.kind === 'keyArn' || ref.kind === 'aliasArn') {
    if (ref.region !== undefined && ref.region !== scope.region) throw NotFoundException.invalidArnRegion(ref.region);
    // One gateway serves one account; another account's ARN names nothing here [U, §4].
    if (ref.account !== scope.accountId) throw NotFoundException.invalidKeyId(input);
  }
  let keyId: string;
  if (ref.kind === 'aliasName' || ref.kind === 'aliasArn') {
    if (!options.allowAlias) throw new InvalidArnException('Key Aliases are not supported for this operation.');
    const target = await keys.aliasTarget(ref.aliasName);
    if (!target) throw NotFoundException.aliasNotFound(aliasArn(scope, ref.aliasName));
    keyId = target;
  } else {
    keyId = ref.keyId;
  }
  const arn = keyArn(scope, keyId);
  const key = await keys.getKey(keyId);
  if (!key) throw NotFoundException.keyDoesNotExist(arn);
  ctx.noteKey(arn);
  await authorize(ctx, options.action, key, options.facts);
  return { key, arn };
}

/**
 * Every token in GrantTokens must be a token of an existing grant (InvalidGrantTokenException).
 * Grants take effect at once here, so a valid token adds nothing beyond the grant itself.
 */
export async function checkGrantTokens(tokens: string[] | undefined, ctx: OperationContext): Promise<void> {
  for (const token of tokens ?? []) await grantOfToken(token, (grantId) => ctx.deps.keys.grantTokenHashes(grantId));
}
