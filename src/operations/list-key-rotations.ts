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

/** Every material version, newest current; ROTATIONS_ONLY (default) leaves out the original material. */
export const listKeyRotations: Operation<ListKeyRotationsInput> = {
  schema: Joi.object({
    KeyId: keyIdSchema.required(),
    IncludeKeyMaterial: Joi.string().valid('ALL_KEY_MATERIAL', 'ROTATIONS_ONLY'),
    Limit: limitSchema,
    Marker: markerSchema,
  }),
  async handle(input, ctx) {
    const { key } = await rotatableKey(input.KeyId, ctx, 'kms:ListKeyRotations');
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
        KeyMaterialState: m.version === key.currentMaterialVersion ? 'CURRENT' : 'NON_CURRENT',
      })),
      ...page.tail,
    };
  },
};
