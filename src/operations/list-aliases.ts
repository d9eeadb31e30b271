import { aliasArn } from '../domain/arn';
import { authorize } from './authorize';
import { epochSeconds, type Operation } from './context';
import { paginate } from './paginate';
import { Joi, keyIdSchema, limitSchema, markerSchema } from './shared-schemas';
import { useKey } from './use-key';

interface ListAliasesInput {
  KeyId?: string;
  Limit?: number;
  Marker?: string;
}

const schema = Joi.object({ KeyId: keyIdSchema, Limit: limitSchema, Marker: markerSchema });

/** All aliases, or those of one key (key id or ARN only). Limit 1-100, default 50 (kms-protocol.md §8). */
export const listAliases: Operation<ListAliasesInput> = {
  schema,
  async handle(input, ctx) {
    const keyId = input.KeyId === undefined ? undefined : (await useKey(ctx, input.KeyId, { allowAlias: false, action: 'kms:ListAliases' })).key.keyId;
    if (keyId === undefined) await authorize(ctx, 'kms:ListAliases');
    const page = await paginate(ctx, 'ListAliases', input, { defaultLimit: 50, maxLimit: 100 }, (after, limit) => ctx.deps.keys.listAliases(after, limit, keyId));
    return {
      Aliases: page.items.map((a) => ({
        AliasName: a.aliasName,
        AliasArn: aliasArn(ctx.deps.scope, a.aliasName),
        TargetKeyId: a.targetKeyId,
        CreationDate: epochSeconds(a.createdAt),
        LastUpdatedDate: epochSeconds(a.lastUpdatedAt),
      })),
      ...page.tail,
    };
  },
};
