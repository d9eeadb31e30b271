import fs from 'node:fs';
import Joi from 'joi';
import { isKeyId } from './domain/key-ref';
import type { GatewayDeps } from './operations/context';
import { checkTags, createKeyInHsm } from './operations/create-key';

/**
 * QKMS_SEED_FILE: keys with fixed ids, created in the HSM on start when missing and never
 * overwritten, so CI pipelines get the same key ids on every fresh token. JSON:
 *   { "keys": [ { "keyId": "1234abcd-…", "description": "…", "tags": { "team": "a" } } ] }
 * Only symmetric keys exist in this version; aliases and rotation arrive with their issues.
 */
const seedSchema = Joi.object({
  keys: Joi.array()
    .items(
      Joi.object({
        keyId: Joi.string().custom((v: string, h) => (isKeyId(v) && !v.startsWith('mrk-') ? v : h.error('any.invalid'))).required(),
        keySpec: Joi.string().valid('SYMMETRIC_DEFAULT').default('SYMMETRIC_DEFAULT'),
        keyUsage: Joi.string().valid('ENCRYPT_DECRYPT').default('ENCRYPT_DECRYPT'),
        description: Joi.string().allow('').max(8192).default(''),
        tags: Joi.object().pattern(Joi.string().min(1).max(128), Joi.string().allow('').max(256)).default({}),
      }),
    )
    .unique('keyId')
    .required(),
});

export async function applySeedFile(file: string, deps: GatewayDeps): Promise<{ created: string[]; existing: string[] }> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`seed file ${file}: ${(err as Error).message}`);
  }
  const { error, value } = seedSchema.validate(parsed, { abortEarly: false });
  if (error) throw new Error(`seed file ${file}: ${error.details.map((d) => d.message).join('; ')}`);
  const result = { created: [] as string[], existing: [] as string[] };
  for (const k of value.keys as Array<{ keyId: string; description: string; tags: Record<string, string> }>) {
    if (await deps.keys.getKey(k.keyId)) {
      result.existing.push(k.keyId);
      continue;
    }
    const tags = checkTags(Object.entries(k.tags).map(([TagKey, TagValue]) => ({ TagKey, TagValue })));
    await createKeyInHsm(deps, { keySpec: 'SYMMETRIC_DEFAULT', keyUsage: 'ENCRYPT_DECRYPT', description: k.description, tags, keyId: k.keyId });
    result.created.push(k.keyId);
  }
  return result;
}
