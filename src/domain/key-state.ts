import { DisabledException, KMSInvalidStateException } from '../errors/kms-errors';

/** Key states (kms-protocol.md §5). Outside custom key stores only these occur. */
/** PendingReplicaDeletion: a multi-Region primary scheduled for deletion while replicas remain (its waiting period begins when the last replica is gone). */
export type KeyState = 'Enabled' | 'Disabled' | 'PendingDeletion' | 'PendingImport' | 'PendingReplicaDeletion';

/**
 * Encrypt, Decrypt, GenerateDataKey* and the other cryptographic operations: Enabled only.
 * Disabled -> D1, PendingDeletion -> S3 (KMSInvalidStateException, as AWS answers today).
 */
export function assertUsableForCrypto(state: KeyState, keyArn: string): void {
  if (state === 'Enabled') return;
  if (state === 'Disabled') throw DisabledException.forKey(keyArn);
  assertNotPendingDeletion(state, keyArn);
  throw KMSInvalidStateException.pendingImport(keyArn);
}

/**
 * TagResource, CreateAlias, UpdateKeyDescription, …: every state but PendingDeletion (S3) and
 * PendingReplicaDeletion (a primary waiting for its replicas' deletion: refused as pending deletion is).
 */
export function assertNotPendingDeletion(state: KeyState, keyArn: string): void {
  if (state === 'PendingDeletion') throw KMSInvalidStateException.pendingDeletion(keyArn);
  if (state === 'PendingReplicaDeletion') throw KMSInvalidStateException.pendingReplicaDeletion(keyArn);
}

/** The states in which a key's deletion is scheduled (CancelKeyDeletion stops it). */
export const DELETION_STATES: readonly KeyState[] = ['PendingDeletion', 'PendingReplicaDeletion'];

/** EnableKey and DisableKey: Enabled or Disabled; PendingDeletion S3, PendingImport S5 (a key without its material cannot be enabled). */
export function assertEnabledOrDisabled(state: KeyState, keyArn: string): void {
  assertNotPendingDeletion(state, keyArn);
  if (state === 'PendingImport') throw KMSInvalidStateException.pendingImport(keyArn);
}
