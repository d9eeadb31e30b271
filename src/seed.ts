import fs from 'node:fs';
import Joi from 'joi';
import YAML from 'yaml';
import { recordSystemEvent } from './audit/system-events';
import { assertAliasName } from './domain/alias-name';
import { isKeyId } from './domain/key-ref';
import type { Tag } from './domain/key-repository';
import type { KeySpec, KeyUsage } from './domain/key-spec';
import { KmsError } from './errors/kms-errors';
import type { GatewayDeps } from './operations/context';
import { ALIASES_PER_KEY } from './operations/alias-target';
import { checkSpec, checkTags, createKeyInHsm } from './operations/create-key';
import { aliasNameSchema } from './operations/shared-schemas';
import { applySeedChanges, changedFields, seedChanges, type SeedChange } from './seed-changes';

/**
 * QKMS_SEED_FILE: keys with fixed ids, created in the HSM on start when missing and never
 * overwritten, so CI pipelines get the same key ids on every fresh token. YAML or JSON (YAML is a
 * superset of JSON, so one parser reads both):
 *
 *   keys:
 *     - keyId: 1234abcd-12ab-34cd-56ef-1234567890ab
 *       keySpec: SYMMETRIC_DEFAULT          # default; any CreateKey KeySpec this gateway supports
 *       keyUsage: ENCRYPT_DECRYPT           # required for every other spec, as in CreateKey
 *       description: CI data keys
 *       aliases: [alias/ci-data]
 *       tags: { team: payments }
 *       rotationPeriodInDays: 365           # automatic rotation (symmetric keys, 90-2560)
 *
 * A key that exists keeps its state and gets its missing aliases. Where its description, tags or
 * rotation differ from what the file gives (seed-changes.ts), one warning per key names the fields
 * and the key is left as it is, unless QKMS_SEED_APPLY_CHANGES is set: then the differences are
 * applied as client requests would apply them, audited. The file is refused (the gateway does not start) when it is not
 * valid, when an existing key has another spec or usage than the file says, or when one of its
 * aliases already names another key: stable ids must mean the same keys.
 */
export class SeedFileError extends Error {}

/** A key as the file gives it (after Joi's defaults). */
interface SeedEntry {
  keyId: string;
  keySpec?: string;
  keyUsage?: string;
  description?: string;
  aliases: string[];
  tags?: Record<string, string>;
  rotationPeriodInDays?: number;
}

/** A key as CreateKey's rules read it. */
interface SeedKey {
  keyId: string;
  keySpec: KeySpec;
  keyUsage: KeyUsage;
  /** Left out: '' for a new key, and not compared with an existing one; so are tags and rotation. */
  description?: string;
  aliases: string[];
  tags?: Tag[];
  rotationPeriodInDays?: number;
}

const seedSchema = Joi.object({
  keys: Joi.array()
    .items(
      Joi.object({
        keyId: Joi.string().custom((v: string, h) => (isKeyId(v) && !v.startsWith('mrk-') ? v : h.error('any.invalid'))).required(),
        keySpec: Joi.string(),
        keyUsage: Joi.string(),
        description: Joi.string().allow('').max(8192),
        aliases: Joi.array().items(aliasNameSchema).unique().max(ALIASES_PER_KEY).default([]),
        tags: Joi.object().pattern(Joi.string().min(1).max(128), Joi.string().allow('').max(256)),
        rotationPeriodInDays: Joi.number().integer().min(90).max(2560),
      }),
    )
    .unique('keyId')
    .required(),
});

interface SeedResult {
  created: string[];
  existing: string[];
  aliasesCreated: string[];
  /** Existing keys whose differences from the file were applied (QKMS_SEED_APPLY_CHANGES). */
  changed: string[];
  /** Existing keys that differ from the file and were left as they are. */
  differing: string[];
}

/** Reads and checks the whole file before touching the HSM, so a bad entry creates nothing. */
export function readSeedFile(file: string): SeedKey[] {
  let parsed: unknown;
  try {
    // failsafe: every scalar is a string, so `version: 1.10` stays "1.10"; Joi converts numbers.
    // Except a plain null (JSON null, YAML ~ or nothing), which stays null so Joi refuses it rather
    // than storing the text "null".
    const doc = YAML.parseDocument(fs.readFileSync(file, 'utf8'), { schema: 'failsafe' });
    if (doc.errors.length > 0) throw doc.errors[0];
    YAML.visit(doc, {
      Scalar: (_key, node) => (node.type === 'PLAIN' && /^(null|Null|NULL|~|)$/.test(String(node.value)) ? new YAML.Scalar(null) : undefined),
    });
    parsed = doc.toJS();
  } catch (err) {
    throw new SeedFileError(`seed file ${file}: ${(err as Error).message}`);
  }
  const { error, value } = seedSchema.validate(parsed, { abortEarly: false });
  if (error) throw new SeedFileError(`seed file ${file}: ${error.details.map((d) => d.message).join('; ')}`);
  const aliasOwner = new Map<string, string>();
  return (value.keys as SeedEntry[]).map((k) => {
    try {
      const { keySpec, keyUsage } = checkSpec({ KeySpec: k.keySpec, KeyUsage: k.keyUsage });
      if (k.rotationPeriodInDays !== undefined && keySpec !== 'SYMMETRIC_DEFAULT') {
        throw new SeedFileError(`rotationPeriodInDays: key spec ${keySpec} is not valid for key rotation`);
      }
      const tags = k.tags && checkTags(Object.entries(k.tags).map(([TagKey, TagValue]) => ({ TagKey, TagValue })));
      for (const alias of k.aliases) {
        assertAliasName(alias);
        if (aliasOwner.has(alias)) throw new SeedFileError(`alias ${alias} is also given to key ${aliasOwner.get(alias)}`);
        aliasOwner.set(alias, k.keyId);
      }
      return { ...k, keySpec, keyUsage, tags };
    } catch (err) {
      if (err instanceof KmsError || err instanceof SeedFileError) throw new SeedFileError(`seed file ${file}: key ${k.keyId}: ${err.message}`);
      throw err;
    }
  });
}

export async function applySeedFile(file: string, deps: GatewayDeps, { isApplyingChanges = deps.config.isApplyingSeedChanges } = {}): Promise<SeedResult> {
  const keys = readSeedFile(file);
  // Every conflict with the store is found before anything is created.
  const plans = [];
  for (const k of keys) {
    const existing = await deps.keys.getKey(k.keyId);
    if (existing && (existing.keySpec !== k.keySpec || existing.keyUsage !== k.keyUsage)) {
      throw new SeedFileError(`seed file ${file}: key ${k.keyId} exists as ${existing.keySpec}/${existing.keyUsage}, the file says ${k.keySpec}/${k.keyUsage}`);
    }
    const missingAliases = [];
    for (const aliasName of k.aliases) {
      const target = await deps.keys.aliasTarget(aliasName);
      if (target === undefined) missingAliases.push(aliasName);
      else if (target !== k.keyId) throw new SeedFileError(`seed file ${file}: alias ${aliasName} already names key ${target}, not ${k.keyId}`);
    }
    if (existing && (await deps.keys.countAliases(k.keyId)) + missingAliases.length > ALIASES_PER_KEY) {
      throw new SeedFileError(`seed file ${file}: key ${k.keyId} would have more than the maximum of ${ALIASES_PER_KEY} aliases`);
    }
    const changes: SeedChange[] = existing ? seedChanges(existing, await deps.keys.listTags(k.keyId), k) : [];
    plans.push({ k, isMissing: !existing, missingAliases, changes });
  }
  const result: SeedResult = { created: [], existing: [], aliasesCreated: [], changed: [], differing: [] };
  for (const { k, isMissing, missingAliases, changes } of plans) {
    if (isMissing) {
      const { keySpec, keyUsage, keyId } = k;
      await createKeyInHsm(deps, { keySpec, keyUsage, description: k.description ?? '', tags: k.tags ?? [], keyId, rotationPeriodDays: k.rotationPeriodInDays });
      await recordSystemEvent(deps, 'seed-file', 'CreateKey', keyId);
      result.created.push(k.keyId);
    } else {
      result.existing.push(k.keyId);
      if (changes.length > 0) await reconcile(deps, k.keyId, changes, { isApplyingChanges, result });
    }
    for (const aliasName of missingAliases) {
      const now = deps.clock();
      const inserted = await deps.keys.insertAlias({ aliasName, targetKeyId: k.keyId, createdAt: now, lastUpdatedAt: now }, ALIASES_PER_KEY);
      if (inserted === 'taken') throw new SeedFileError(`seed file ${file}: alias ${aliasName} was created by someone else while the seed was applied`);
      if (inserted === 'quota') throw new SeedFileError(`seed file ${file}: key ${k.keyId} reached the maximum of ${ALIASES_PER_KEY} aliases while the seed was applied`);
      await recordSystemEvent(deps, 'seed-file', 'CreateAlias', k.keyId);
      result.aliasesCreated.push(aliasName);
    }
  }
  return result;
}

/** An existing key that differs from its entry: applied when asked, otherwise one warning naming the fields (never their values). */
async function reconcile(deps: GatewayDeps, keyId: string, changes: SeedChange[], { isApplyingChanges, result }: { isApplyingChanges: boolean; result: SeedResult }): Promise<void> {
  const fields = changedFields(changes);
  if (!isApplyingChanges) {
    deps.logger.warn('seed file: an existing key differs from the file and is left as it is; QKMS_SEED_APPLY_CHANGES=true applies the file', { keyId, fields });
    result.differing.push(keyId);
    return;
  }
  const { applied, refused } = await applySeedChanges(deps, keyId, changes);
  if (applied.length > 0) deps.logger.info('seed file: an existing key was changed to match the file', { keyId, fields: applied });
  (refused.length > 0 ? result.differing : result.changed).push(keyId);
}
