import { aliasArn } from '../domain/arn';
import { assertAliasName } from '../domain/alias-name';
import { NotFoundException, ValidationException } from '../errors/kms-errors';
import type { Operation } from './context';
import { aliasQuotaExceeded, aliasTarget, ALIASES_PER_KEY } from './alias-target';
import { authorize } from './authorize';
import { aliasNameSchema, Joi, keyIdSchema } from './shared-schemas';

interface UpdateAliasInput {
  AliasName: string;
  TargetKeyId: string;
}

const schema = Joi.object({
  AliasName: aliasNameSchema.required(),
  TargetKeyId: keyIdSchema.required(),
});

/**
 * Points an existing alias at another key of the same type and usage (kms-protocol.md §10). The old
 * target may be pending deletion; the new one may not.
 */
export const updateAlias: Operation<UpdateAliasInput> = {
  schema,
  async handle(input, ctx) {
    assertAliasName(input.AliasName);
    const alias = await ctx.deps.keys.getAlias(input.AliasName);
    if (!alias) throw NotFoundException.aliasNotFound(aliasArn(ctx.deps.scope, input.AliasName));
    const target = await aliasTarget(input.TargetKeyId, ctx, 'kms:UpdateAlias');
    // kms:UpdateAlias on the current target too (as AWS): else anyone allowed on their own key
    // could take over an alias that callers use for another principal's key.
    const current = await ctx.deps.keys.getKey(alias.targetKeyId);
    if (current) await authorize(ctx, 'kms:UpdateAlias', current);
    if (current && (current.keySpec !== target.key.keySpec || current.keyUsage !== target.key.keyUsage)) {
      throw new ValidationException(
        `${target.arn} is not the same type of key as the alias's current target: ${target.key.keySpec}/${target.key.keyUsage} vs ${current.keySpec}/${current.keyUsage}.`,
      );
    }
    if (!(await ctx.deps.keys.retargetAlias(input.AliasName, target.key.keyId, ctx.deps.clock(), ALIASES_PER_KEY))) throw aliasQuotaExceeded(target.arn);
    return undefined;
  },
};
