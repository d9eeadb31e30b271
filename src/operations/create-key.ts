import crypto from 'node:crypto';
import { keyArn } from '../domain/arn';
import type { KeyRecord, Tag } from '../domain/key-repository';
import { nextRotationDate } from '../domain/key-lifecycle';
import { createKeyWithMaterial } from '../domain/key-material';
import { isSupportedSpec, KEY_SPECS_IN_KMS, KEY_USAGES_IN_KMS, SUPPORTED_SPECS, type KeySpec, type KeyUsage } from '../domain/key-spec';
import { TagException, UnsupportedOperationException, ValidationException } from '../errors/kms-errors';
import { keySpecProblem } from '../domain/token-support';
import { capabilityProblem } from '../hsm/capabilities';
import { authorize } from './authorize';
import { checkNewKeyPolicy } from './key-policy';
import type { GatewayDeps, Operation } from './context';
import { noSuchCustomKeyStore } from './custom-key-stores';
import { keyMetadata } from './key-metadata';
import { Joi, tagsSchema } from './shared-schemas';

interface CreateKeyInput {
  Policy?: string;
  Description?: string;
  KeyUsage?: string;
  KeySpec?: string;
  CustomerMasterKeySpec?: string;
  Origin?: string;
  CustomKeyStoreId?: string;
  BypassPolicyLockoutSafetyCheck?: boolean;
  Tags?: Array<{ TagKey: string; TagValue: string }>;
  MultiRegion?: boolean;
  XksKeyId?: string;
}

const schema = Joi.object({
  Policy: Joi.string().min(1).max(131072),
  Description: Joi.string().min(0).max(8192).allow(''),
  KeyUsage: Joi.string().valid(...KEY_USAGES_IN_KMS),
  KeySpec: Joi.string().valid(...KEY_SPECS_IN_KMS),
  CustomerMasterKeySpec: Joi.string().valid(...KEY_SPECS_IN_KMS),
  Origin: Joi.string().valid('AWS_KMS', 'EXTERNAL', 'AWS_CLOUDHSM', 'EXTERNAL_KEY_STORE'),
  CustomKeyStoreId: Joi.string().min(1).max(64),
  BypassPolicyLockoutSafetyCheck: Joi.boolean(),
  Tags: tagsSchema,
  MultiRegion: Joi.boolean(),
  XksKeyId: Joi.string().min(1).max(128),
});

export const createKey: Operation<CreateKeyInput> = {
  schema,
  async handle(input, ctx) {
    await authorize(ctx, 'kms:CreateKey');
    const { keySpec, keyUsage } = checkSpec(input);
    const tags = checkTags(input.Tags ?? []);
    if (input.Policy !== undefined) await checkNewKeyPolicy(input.Policy, ctx, { isBypassed: input.BypassPolicyLockoutSafetyCheck === true });
    const spec = { keySpec, keyUsage, description: input.Description ?? '', tags, policy: input.Policy, isMultiRegion: input.MultiRegion === true };
    const key = input.Origin === 'EXTERNAL' ? await createExternalKey(ctx.deps, spec) : await createKeyInHsm(ctx.deps, spec);
    ctx.noteKey(keyArn(ctx.deps.scope, key.keyId));
    return { KeyMetadata: await keyMetadata(key, ctx.deps) };
  },
};

/** KeySpec and KeyUsage as CreateKey validates them (kms-protocol.md §6), in AWS's order and words. */
export function checkSpec(input: Pick<CreateKeyInput, 'KeySpec' | 'KeyUsage' | 'CustomerMasterKeySpec' | 'Origin' | 'CustomKeyStoreId' | 'XksKeyId' | 'MultiRegion'>): { keySpec: KeySpec; keyUsage: KeyUsage } {
  if (input.KeySpec && input.CustomerMasterKeySpec) {
    throw new ValidationException('You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec is deprecated.');
  }
  const keySpec = input.KeySpec ?? input.CustomerMasterKeySpec ?? 'SYMMETRIC_DEFAULT';
  if (keySpec !== 'SYMMETRIC_DEFAULT' && !input.KeyUsage) {
    throw new ValidationException('You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys.');
  }
  const keyUsage = (input.KeyUsage ?? 'ENCRYPT_DECRYPT') as KeyUsage;
  if (!isSupportedSpec(keySpec)) throw new UnsupportedOperationException(`KeySpec ${keySpec} is not supported by this gateway.`);
  if (!SUPPORTED_SPECS[keySpec].usages[keyUsage]) {
    throw new ValidationException(`KeyUsage ${keyUsage} is not compatible with KeySpec ${keySpec}`);
  }
  // A store named is looked for first: Origin AWS_CLOUDHSM or EXTERNAL goes with one.
  if (input.CustomKeyStoreId) noSuchCustomKeyStore(input.CustomKeyStoreId);
  if (input.Origin && input.Origin !== 'AWS_KMS' && input.Origin !== 'EXTERNAL') {
    throw new UnsupportedOperationException(`Origin ${input.Origin} is not supported: key material is generated in the HSM (AWS_KMS) or imported (EXTERNAL).`);
  }
  if (input.XksKeyId) throw new UnsupportedOperationException('XksKeyId names a key in an external key store, which this gateway does not offer.');
  if (input.MultiRegion && input.Origin === 'EXTERNAL') {
    // AWS imports material into each replica separately; here a key id's material is one set of HSM
    // objects shared by its regions (docs/crypto.md "Multi-Region keys").
    throw new UnsupportedOperationException('Multi-Region keys with Origin EXTERNAL are not supported by this gateway: a multi-Region key shares one HSM material among its regions, so its material is generated in the HSM (AWS_KMS).');
  }
  return { keySpec, keyUsage };
}

/** Tag rules of TagResource (kms-protocol.md §10), shared by CreateKey. */
export function checkTags(tags: Array<{ TagKey: string; TagValue: string }>): Tag[] {
  if (tags.length > 50) throw new TagException('Too many tags');
  if (new Set(tags.map((t) => t.TagKey)).size !== tags.length) throw new TagException('Duplicate tag keys');
  if (tags.some((t) => t.TagKey.toLowerCase().startsWith('aws:'))) throw new TagException('Tags beginning with aws: are reserved');
  return tags.map((t) => ({ key: t.TagKey, value: t.TagValue }));
}

/**
 * A key for imported material (Origin EXTERNAL): PendingImport, with no material until
 * ImportKeyMaterial, so nothing is made on the token yet. Refused where the token could not hold
 * or use such material: what generated keys need, and AES-GCM for symmetric ones (imported
 * material is one AES key, with no MAC key beside it, so its blobs are AES-GCM).
 */
async function createExternalKey(deps: GatewayDeps, spec: { keySpec: KeySpec; keyUsage: KeyUsage; description: string; tags: Tag[]; policy?: string }): Promise<KeyRecord> {
  const caps = deps.hsm.capabilities();
  const problem =
    (spec.keySpec === 'ECC_NIST_EDWARDS25519' ? 'Ed25519 key material cannot be imported into this gateway' : undefined) ??
    keySpecProblem(caps, spec.keySpec, spec.keyUsage) ??
    (spec.keySpec === 'SYMMETRIC_DEFAULT' ? capabilityProblem(caps, 'aes-gcm') : undefined);
  if (problem) throw new UnsupportedOperationException(`KeySpec ${spec.keySpec} with Origin EXTERNAL: ${problem}.`);
  const key: KeyRecord = {
    keyId: crypto.randomUUID(), createdAt: deps.clock(), description: spec.description, keyUsage: spec.keyUsage, keySpec: spec.keySpec,
    origin: 'EXTERNAL', state: 'PendingImport', currentMaterialVersion: 0, policy: spec.policy,
  };
  await deps.keys.insertExternalKey(key, spec.tags);
  return key;
}

/**
 * A new key: its first material made in the HSM and its metadata recorded, crash-safe
 * (domain/key-material.ts): a failure or a crash before the key is recorded leaves nothing behind
 * once rolled back.
 */
export async function createKeyInHsm(
  deps: GatewayDeps,
  spec: { keySpec: KeySpec; keyUsage: KeyUsage; description: string; tags: Tag[]; policy?: string; keyId?: string; rotationPeriodDays?: number; isMultiRegion?: boolean },
): Promise<KeyRecord> {
  const problem = keySpecProblem(deps.hsm.capabilities(), spec.keySpec, spec.keyUsage);
  if (problem) throw new UnsupportedOperationException(`KeySpec ${spec.keySpec} with KeyUsage ${spec.keyUsage}: ${problem}.`);
  // A multi-Region key's id is `mrk-` and 32 hex digits; this region holds its primary.
  const keyId = spec.keyId ?? (spec.isMultiRegion ? `mrk-${crypto.randomBytes(16).toString('hex')}` : crypto.randomUUID());
  const now = deps.clock();
  const key: KeyRecord = {
    keyId, createdAt: now, description: spec.description, keyUsage: spec.keyUsage, keySpec: spec.keySpec,
    origin: 'AWS_KMS', state: 'Enabled', currentMaterialVersion: 1, policy: spec.policy,
    ...(spec.rotationPeriodDays && { rotation: { periodDays: spec.rotationPeriodDays, nextRotationDate: nextRotationDate(now, spec.rotationPeriodDays) } }),
    ...(spec.isMultiRegion && { primaryRegion: deps.scope.region }),
  };
  await createKeyWithMaterial(deps, key, spec.tags);
  return key;
}
