import { expirationProblem, ImportRefused, unwrapIntoIntent } from '../domain/import-material';
import { rollBack } from '../domain/key-material';
import { newObjectIds, type ExpirationModel, type KeyMaterial, type MaterialIntent } from '../domain/key-repository';
import { ConflictException, IncorrectKeyMaterialException, InvalidCiphertextException, InvalidImportTokenException, KMSInvalidStateException, UnsupportedOperationException, ValidationException } from '../errors/kms-errors';
import type { Operation, OperationContext } from './context';
import { importableKey, parametersFor } from './imported-key';
import { Joi, keyIdSchema } from './shared-schemas';
import type { ResolvedKey } from './use-key';

interface ImportKeyMaterialInput {
  KeyId: string;
  ImportToken: Buffer;
  EncryptedKeyMaterial: Buffer;
  ValidTo?: number;
  ExpirationModel?: ExpirationModel;
  ImportType?: 'NEW_KEY_MATERIAL' | 'EXISTING_KEY_MATERIAL';
  KeyMaterialDescription?: string;
  KeyMaterialId?: string;
}

/**
 * Material encrypted under GetParametersForImport's public key, unwrapped into token objects by the
 * HSM (domain/import-material.ts): a key's first material, new material for a later on-demand
 * rotation (symmetric keys, NEW_KEY_MATERIAL), or the same material again after it was deleted or
 * expired, or to change its expiration (EXISTING_KEY_MATERIAL, recognised by its material id).
 */
export const importKeyMaterial: Operation<ImportKeyMaterialInput> = {
  schema: Joi.object({
    KeyId: keyIdSchema.required(),
    ImportToken: Joi.blob().min(1).max(6144).required(),
    EncryptedKeyMaterial: Joi.blob().min(1).max(6144).required(),
    ValidTo: Joi.number(),
    ExpirationModel: Joi.string().valid('KEY_MATERIAL_EXPIRES', 'KEY_MATERIAL_DOES_NOT_EXPIRE'),
    ImportType: Joi.string().valid('NEW_KEY_MATERIAL', 'EXISTING_KEY_MATERIAL'),
    KeyMaterialDescription: Joi.string().min(0).max(256).allow(''),
    KeyMaterialId: Joi.string().length(64).pattern(/^[a-f0-9]+$/),
  }),
  async handle(input, ctx) {
    const expirationModel = input.ExpirationModel ?? 'KEY_MATERIAL_EXPIRES';
    const validTo = input.ValidTo === undefined ? undefined : new Date(input.ValidTo * 1000);
    const problem = expirationProblem(expirationModel, validTo, ctx.deps.clock());
    if (problem) throw new ValidationException(problem);
    const resolved = await importableKey(ctx, input.KeyId, 'kms:ImportKeyMaterial');
    const parameters = await parametersFor(ctx, resolved, input.ImportToken);
    const materials = await ctx.deps.keys.listMaterialsOf(resolved.key.keyId);
    const target = targetVersion(resolved, materials, input);
    const intent = await reserve(ctx, resolved, target);
    let materialId: string;
    try {
      materialId = await unwrapIntoIntent(ctx.deps, intent, {
        key: resolved.key, parameters, encrypted: input.EncryptedKeyMaterial, expected: target === 'new' ? undefined : target.materialId, taken: materials.map((m) => m.materialId),
      });
    } catch (err) {
      throw refusal(err);
    }
    const outcome = await ctx.deps.keys.activateImport(intent, { materialId, expirationModel, validTo, description: input.KeyMaterialDescription }).catch(async (err: unknown) => {
      await rollBack(ctx.deps, intent, { isOwn: true }).catch(() => undefined);
      throw err;
    });
    // The version's material was there already: only its expiration changed, and the objects just made go.
    if (outcome === 'expiry-updated') await rollBack(ctx.deps, intent, { isOwn: true });
    return { KeyId: resolved.arn, KeyMaterialId: materialId };
  },
};

/**
 * Which version the import is for. ImportType defaults to NEW_KEY_MATERIAL for a key without
 * material and EXISTING_KEY_MATERIAL after [D]; only symmetric keys take new material later, and
 * only they take KeyMaterialId and a description [D]. A reimport without KeyMaterialId is of the
 * current version (a choice: AWS finds the version from the material; KeyMaterialId names another).
 */
function targetVersion(resolved: ResolvedKey, materials: KeyMaterial[], input: ImportKeyMaterialInput): KeyMaterial | 'new' {
  const { key, arn } = resolved;
  const isSymmetric = key.keySpec === 'SYMMETRIC_DEFAULT';
  if (!isSymmetric && (input.KeyMaterialId !== undefined || input.KeyMaterialDescription !== undefined)) {
    throw new ValidationException('KeyMaterialId and KeyMaterialDescription are valid only for symmetric encryption keys.');
  }
  const importType = input.ImportType ?? (materials.length === 0 ? 'NEW_KEY_MATERIAL' : 'EXISTING_KEY_MATERIAL');
  if (importType === 'NEW_KEY_MATERIAL') {
    if (input.KeyMaterialId !== undefined) throw new ValidationException('You cannot specify a KeyMaterialId with ImportType NEW_KEY_MATERIAL.');
    if (materials.length > 0 && !isSymmetric) throw new ValidationException(`The key material of ${arn} cannot be changed: new key material can be imported only into symmetric encryption keys.`);
    return 'new';
  }
  if (materials.length === 0) throw new ValidationException(`No key material was imported into ${arn} yet: import it with ImportType NEW_KEY_MATERIAL.`);
  const wanted = input.KeyMaterialId ?? materials.find((m) => m.version === key.currentMaterialVersion)?.materialId;
  const found = materials.find((m) => m.materialId === wanted);
  if (!found) throw new ValidationException(`Key material ${wanted} is not associated with ${arn}.`);
  return found;
}

async function reserve(ctx: OperationContext, resolved: ResolvedKey, target: KeyMaterial | 'new'): Promise<MaterialIntent> {
  const reserved = await ctx.deps.keys.reserveImport(resolved.key.keyId, { version: target === 'new' ? 'new' : target.version, objectIds: newObjectIds(resolved.key.keySpec, 'EXTERNAL'), createdAt: ctx.deps.clock() });
  if (reserved === 'busy') throw new ConflictException(`Another import or deletion of this key material of ${resolved.arn} is under way; try again.`);
  if (reserved === 'state') throw KMSInvalidStateException.pendingDeletion(resolved.arn);
  if ('pending' in reserved) {
    // AWS names the new material's id too; it is known only once the HSM has unwrapped it, after this refusal.
    throw new KMSInvalidStateException(`New key material cannot be imported into KMS key ${resolved.key.keyId}, because another key material (id: ${reserved.pending}) is pending rotation.`);
  }
  return reserved;
}

function refusal(err: unknown): unknown {
  if (!(err instanceof ImportRefused)) return err;
  if (err.reason === 'undecryptable') return new InvalidCiphertextException('', { cause: err });
  if (err.reason === 'unsupported') return new UnsupportedOperationException(err.message, { cause: err });
  if (err.reason === 'parameters-gone') return InvalidImportTokenException.create();
  return new IncorrectKeyMaterialException(err.message, { cause: err });
}
