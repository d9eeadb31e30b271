import { aliasArn } from '../domain/arn';
import { assertAliasName } from '../domain/alias-name';
import { NotFoundException } from '../errors/kms-errors';
import type { Operation } from './context';
import { aliasNameSchema, Joi } from './shared-schemas';
import { useKey } from './use-key';

interface DeleteAliasInput {
  AliasName: string;
}

const schema = Joi.object({ AliasName: aliasNameSchema.required() });

/** Works whatever the state of the target key; the key itself is untouched. */
export const deleteAlias: Operation<DeleteAliasInput> = {
  schema,
  async handle(input, ctx) {
    assertAliasName(input.AliasName);
    const alias = await ctx.deps.keys.getAlias(input.AliasName);
    if (!alias) throw NotFoundException.aliasNotFound(aliasArn(ctx.deps.scope, input.AliasName));
    await useKey(ctx, alias.targetKeyId, { allowAlias: false, action: 'kms:DeleteAlias' });
    await ctx.deps.keys.deleteAlias(input.AliasName);
    return undefined;
  },
};
