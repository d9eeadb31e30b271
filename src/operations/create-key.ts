import crypto from 'node:crypto';
import { keyArn } from '../domain/arn';
import type { KeyRecord, Tag } from '../domain/key-repository';
import { materialLabels } from '../domain/key-repository';
import { KEY_SPECS_IN_KMS, KEY_USAGES_IN_KMS, SUPPORTED_SPECS } from '../domain/key-spec';
import { TagException, UnsupportedOperationException, ValidationException } from '../errors/kms-errors';
import { authorize } from './authorize';
import { checkNewKeyPolicy } from './key-policy';
import type { GatewayDeps, Operation } from './context';
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
    const keySpec = checkSpec(input);
    const tags = checkTags(input.Tags ?? []);
    if (input.Policy !== undefined) await checkNewKeyPolicy(input.Policy, ctx, { isBypassed: input.BypassPolicyLockoutSafetyCheck === true });
    const key = await createKeyInHsm(ctx.deps, { keySpec, description: input.Description ?? '', tags, policy: input.Policy });
    ctx.noteKey(keyArn(ctx.deps.scope, key.keyId));
    return { KeyMetadata: await keyMetadata(key, ctx.deps) };
  },
};

function checkSpec(input: CreateKeyInput): 'SYMMETRIC_DEFAULT' {
  if (input.KeySpec && input.CustomerMasterKeySpec) {
    throw new ValidationException('You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec is deprecated.');
  }
  const keySpec = input.KeySpec ?? input.CustomerMasterKeySpec ?? 'SYMMETRIC_DEFAULT';
  if (keySpec !== 'SYMMETRIC_DEFAULT' && !input.KeyUsage) {
    throw new ValidationException('You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys.');
  }
  const usage = input.KeyUsage ?? 'ENCRYPT_DECRYPT';
  const supported = SUPPORTED_SPECS[keySpec];
  if (keySpec === 'SYMMETRIC_DEFAULT' && usage !== 'ENCRYPT_DECRYPT') {
    throw new ValidationException(`KeyUsage ${usage} is not compatible with KeySpec ${keySpec}`);
  }
  if (!supported) throw new UnsupportedOperationException(`KeySpec ${keySpec} is not supported by this gateway yet.`);
  if (input.Origin && input.Origin !== 'AWS_KMS') {
    throw new UnsupportedOperationException(`Origin ${input.Origin} is not supported: key material is always generated in the HSM.`);
  }
  if (input.CustomKeyStoreId || input.XksKeyId) throw new UnsupportedOperationException('Custom key stores are not supported.');
  if (input.MultiRegion) throw new UnsupportedOperationException('Multi-Region keys are not supported.');
  return 'SYMMETRIC_DEFAULT';
}

/** Tag rules of TagResource (kms-protocol.md §10), shared by CreateKey. */
export function checkTags(tags: Array<{ TagKey: string; TagValue: string }>): Tag[] {
  if (tags.length > 50) throw new TagException('Too many tags');
  if (new Set(tags.map((t) => t.TagKey)).size !== tags.length) throw new TagException('Duplicate tag keys');
  if (tags.some((t) => t.TagKey.toLowerCase().startsWith('aws:'))) throw new TagException('Tags beginning with aws: are reserved');
  return tags.map((t) => ({ key: t.TagKey, value: t.TagValue }));
}

/**
 * Generates a key's first material in the HSM (KEK + MAC key) and then records its metadata. If
 * the metadata cannot be written, the new objects are destroyed so nothing is orphaned.
 */
export async function createKeyInHsm(
  deps: GatewayDeps,
  spec: { keySpec: 'SYMMETRIC_DEFAULT'; description: string; tags: Tag[]; policy?: string; keyId?: string },
): Promise<KeyRecord> {
  const keyId = spec.keyId ?? crypto.randomUUID();
  const now = deps.clock();
  const labels = materialLabels(keyId, 1);
  const materialId = (await deps.hsm.randomBytes(32)).toString('hex');
  const key: KeyRecord = {
    keyId, createdAt: now, description: spec.description, keyUsage: 'ENCRYPT_DECRYPT', keySpec: spec.keySpec,
    origin: 'AWS_KMS', state: 'Enabled', currentMaterialVersion: 1, policy: spec.policy,
  };
  try {
    await deps.hsm.generateKek(labels.kek);
    await deps.hsm.generateMacKey(labels.mac);
    await deps.keys.insertKey(key, { keyId, version: 1, materialId, createdAt: now }, spec.tags);
  } catch (err) {
    await Promise.allSettled([deps.hsm.destroyKey(labels.kek), deps.hsm.destroyKey(labels.mac)]);
    throw err;
  }
  return key;
}
