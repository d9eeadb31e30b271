import { discardImportedMaterial } from '../domain/import-material';
import { KMSInvalidStateException, ValidationException } from '../errors/kms-errors';
import type { Operation } from './context';
import { importableKey } from './imported-key';
import { Joi, keyIdSchema } from './shared-schemas';

interface DeleteImportedKeyMaterialInput {
  KeyId: string;
  KeyMaterialId?: string;
}

/**
 * The material's token objects destroyed; the key PendingImport (unless pending deletion) until
 * the same material is imported again. Deleting material already deleted changes nothing.
 */
export const deleteImportedKeyMaterial: Operation<DeleteImportedKeyMaterialInput> = {
  schema: Joi.object({ KeyId: keyIdSchema.required(), KeyMaterialId: Joi.string().length(64).pattern(/^[a-f0-9]+$/) }),
  async handle(input, ctx) {
    const { key, arn } = await importableKey(ctx, input.KeyId, 'kms:DeleteImportedKeyMaterial', { anyState: true });
    const materials = await ctx.deps.keys.listMaterialsOf(key.keyId);
    const wanted = input.KeyMaterialId ?? materials.find((m) => m.version === key.currentMaterialVersion)?.materialId;
    if (wanted === undefined) throw new KMSInvalidStateException(`${arn} is pending import.`);
    const target = materials.find((m) => m.materialId === wanted);
    if (!target) throw new ValidationException(`Key material ${wanted} is not associated with ${arn}.`);
    await discardImportedMaterial(ctx.deps, key.keyId, target.version);
    return { KeyId: arn, KeyMaterialId: target.materialId };
  },
};
