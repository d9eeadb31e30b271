import { epochSeconds, type Operation } from './context';
import { rotatableKey } from './key-rotation';
import { paginate } from './paginate';
import { Joi, keyIdSchema, limitSchema, markerSchema } from './shared-schemas';

interface ListKeyRotationsInput {
  KeyId: string;
  IncludeKeyMaterial?: 'ALL_KEY_MATERIAL' | 'ROTATIONS_ONLY';
  Limit?: number;
  Marker?: string;
}

/**
 * Every material version; ROTATIONS_ONLY (default) leaves out the original material. Imported
 * material shows its import state and expiration, and material imported for the next on-demand
 * rotation is PENDING_ROTATION.
 */
export const listKeyRotations: Operation<ListKeyRotationsInput> = {
  schema: Joi.object({
    KeyId: keyIdSchema.required(),
    IncludeKeyMaterial: Joi.string().valid('ALL_KEY_MATERIAL', 'ROTATIONS_ONLY'),
    Limit: limitSchema,
    Marker: markerSchema,
  }),
  async handle(input, ctx) {
    const { key } = await rotatableKey(input.KeyId, ctx, 'kms:ListKeyRotations', { allowImported: true });
    const materials = (await ctx.deps.keys.listMaterialsOf(key.keyId)).filter(
      (m) => input.IncludeKeyMaterial === 'ALL_KEY_MATERIAL' || m.rotationType !== undefined,
    );
    const page = await paginate(ctx, `ListKeyRotations/${key.keyId}`, input, { defaultLimit: 100, maxLimit: 1000 }, async (after, limit) =>
      materials.filter((m) => m.version > after).slice(0, limit).map((m) => ({ ...m, position: m.version })),
    );
    return {
      Rotations: page.items.map((m) => ({
        KeyId: key.keyId,
        RotationDate: epochSeconds(m.createdAt),
        ...(m.rotationType && { RotationType: m.rotationType }),
        KeyMaterialId: m.materialId,
        KeyMaterialState: m.version === key.currentMaterialVersion ? 'CURRENT' : m.version > key.currentMaterialVersion ? 'PENDING_ROTATION' : 'NON_CURRENT',
        ...(m.imported && {
          ImportState: m.imported.importState,
          ExpirationModel: m.imported.expirationModel,
          ...(m.imported.validTo && { ValidTo: epochSeconds(m.imported.validTo) }),
          ...(m.imported.description !== undefined && { KeyMaterialDescription: m.imported.description }),
        }),
      })),
      ...page.tail,
    };
  },
};
