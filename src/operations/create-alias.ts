import { aliasArn } from '../domain/arn';
import { assertAliasName } from '../domain/alias-name';
import { AlreadyExistsException } from '../errors/kms-errors';
import type { Operation } from './context';
import { aliasQuotaExceeded, aliasTarget, ALIASES_PER_KEY } from './alias-target';
import { aliasNameSchema, Joi, keyIdSchema } from './shared-schemas';

interface CreateAliasInput {
  AliasName: string;
  TargetKeyId: string;
}

const schema = Joi.object({
  AliasName: aliasNameSchema.required(),
  TargetKeyId: keyIdSchema.required(),
});

/** Names are unique per account and region, case-sensitive (kms-protocol.md §4). */
export const createAlias: Operation<CreateAliasInput> = {
  schema,
  async handle(input, ctx) {
    assertAliasName(input.AliasName);
    const target = await aliasTarget(input.TargetKeyId, ctx, 'kms:CreateAlias');
    const now = ctx.deps.clock();
    const inserted = await ctx.deps.keys.insertAlias({ aliasName: input.AliasName, targetKeyId: target.key.keyId, createdAt: now, lastUpdatedAt: now }, ALIASES_PER_KEY);
    if (inserted === 'taken') throw new AlreadyExistsException(`An alias with the name ${aliasArn(ctx.deps.scope, input.AliasName)} already exists`);
    if (inserted === 'quota') throw aliasQuotaExceeded(target.arn);
    return undefined;
  },
};
