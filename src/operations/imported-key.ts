import type { ImportParameters } from '../domain/key-repository';
import { assertNotPendingDeletion } from '../domain/key-state';
import { ExpiredImportTokenException, InvalidImportTokenException, UnsupportedOperationException } from '../errors/kms-errors';
import { parametersOfToken } from '../domain/import-material';
import type { OperationContext } from './context';
import { useKey, type ResolvedKey } from './use-key';

/**
 * The key of GetParametersForImport, ImportKeyMaterial and DeleteImportedKeyMaterial: named by key
 * id or ARN (no alias), of Origin EXTERNAL — any other origin is UnsupportedOperationException in
 * AWS's words [O] — and, unless `anyState`, not pending deletion.
 */
export async function importableKey(ctx: OperationContext, keyId: string, action: string, { anyState = false } = {}): Promise<ResolvedKey> {
  const resolved = await useKey(ctx, keyId, { allowAlias: false, action });
  if (resolved.key.origin !== 'EXTERNAL') throw new UnsupportedOperationException(`${resolved.arn} origin is ${resolved.key.origin} which is not valid for this operation.`);
  if (!anyState) assertNotPendingDeletion(resolved.key.state, resolved.arn);
  return resolved;
}

/** The parameters an import token names, for this key: InvalidImportTokenException or ExpiredImportTokenException otherwise. */
export async function parametersFor(ctx: OperationContext, resolved: ResolvedKey, token: Buffer): Promise<ImportParameters> {
  const found = await parametersOfToken(ctx.deps, token, ctx.deps.clock());
  if (found === 'invalid' || (found !== 'expired' && found.keyId !== resolved.key.keyId)) throw InvalidImportTokenException.create();
  if (found === 'expired') throw ExpiredImportTokenException.create();
  return found;
}
