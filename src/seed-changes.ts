import crypto from 'node:crypto';
import { recordSystemEvent } from './audit/system-events';
import type { KeyRecord, Tag } from './domain/key-repository';
import { KmsError } from './errors/kms-errors';
import type { GatewayDeps, OperationContext } from './operations/context';
import { registry } from './operations/registry';
import { validateInput } from './operations/validate-input';

/**
 * An existing key against its seed entry: the description, tags and rotation the entry gives. A
 * field the entry leaves out is not compared, so a file that only fixes a key id never fights an
 * operator over the rest.
 */
export interface SeedDeclaration {
  description?: string;
  /** The whole tag set: a tag the key has and the entry lacks differs too. */
  tags?: Tag[];
  rotationPeriodInDays?: number;
}

export type SeedField = 'description' | 'tags' | 'rotation';

/** One client request that brings one field of the key to what the file says. */
export interface SeedChange {
  field: SeedField;
  operation: 'UpdateKeyDescription' | 'UntagResource' | 'TagResource' | 'EnableKeyRotation';
  input: Record<string, unknown>;
}

/** The requests that would make `key` (with its `tags`) what the entry declares; none when it already is. */
export function seedChanges(key: KeyRecord, tags: Tag[], declared: SeedDeclaration): SeedChange[] {
  const KeyId = key.keyId;
  const changes: SeedChange[] = [];
  if (declared.description !== undefined && declared.description !== key.description) {
    changes.push({ field: 'description', operation: 'UpdateKeyDescription', input: { KeyId, Description: declared.description } });
  }
  if (declared.tags !== undefined) {
    const wanted = new Set(declared.tags.map((t) => t.key));
    const held = new Map(tags.map((t) => [t.key, t.value]));
    const removed = tags.filter((t) => !wanted.has(t.key)).map((t) => t.key);
    const put = declared.tags.filter((t) => held.get(t.key) !== t.value).map((t) => ({ TagKey: t.key, TagValue: t.value }));
    // Removed first: a key holds at most 50 tags at any moment (TagResource counts the old ones).
    if (removed.length > 0) changes.push({ field: 'tags', operation: 'UntagResource', input: { KeyId, TagKeys: removed } });
    if (put.length > 0) changes.push({ field: 'tags', operation: 'TagResource', input: { KeyId, Tags: put } });
  }
  if (declared.rotationPeriodInDays !== undefined && key.rotation?.periodDays !== declared.rotationPeriodInDays) {
    changes.push({ field: 'rotation', operation: 'EnableKeyRotation', input: { KeyId, RotationPeriodInDays: declared.rotationPeriodInDays } });
  }
  return changes;
}

/** The fields the changes concern, once each, in the file's order: what the log names (never a value). */
export function changedFields(changes: SeedChange[]): SeedField[] {
  return [...new Set(changes.map((c) => c.field))];
}

/**
 * Makes the changes as the account's administrator would, one request each, through the
 * operations' own validation, authorization and state checks, and audits each like the seed's
 * CreateKey (`sourceIp` seed-file). A change the key refuses (its state, its policy) is audited
 * with its error and logged, and the other changes are still made; anything else stops the start.
 */
export async function applySeedChanges(deps: GatewayDeps, keyId: string, changes: SeedChange[]): Promise<{ applied: SeedField[]; refused: SeedField[] }> {
  const principal = { accessKeyId: deps.config.adminCredential.accessKeyId, principalArn: `arn:aws:iam::${deps.config.accountId}:root` };
  const applied: SeedChange[] = [];
  const refused: SeedChange[] = [];
  for (const change of changes) {
    const operation = registry.get(change.operation)!;
    const ctx: OperationContext = { deps, requestId: crypto.randomUUID(), principal, log: deps.logger.child({ operation: change.operation }), noteKey: () => {} };
    try {
      await operation.handle(validateInput(operation.schema, change.input), ctx);
    } catch (err) {
      if (!(err instanceof KmsError)) throw err;
      await recordSystemEvent(deps, 'seed-file', change.operation, keyId, err);
      deps.logger.warn('seed file: a change to an existing key was refused; the key keeps its value', { keyId, field: change.field, operation: change.operation, error: err.type, reason: err.message });
      refused.push(change);
      continue;
    }
    await recordSystemEvent(deps, 'seed-file', change.operation, keyId);
    applied.push(change);
  }
  return { applied: changedFields(applied), refused: changedFields(refused) };
}
