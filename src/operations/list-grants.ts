import { keyArn } from '../domain/arn';
import type { Grant } from '../domain/key-repository';
import { epochSeconds, type Operation, type OperationContext } from './context';
import { paginate } from './paginate';
import { Joi, keyIdSchema, limitSchema, markerSchema } from './shared-schemas';
import { useKey } from './use-key';

/** A grant as ListGrants and ListRetirableGrants list it. */
export function grantEntry(g: Grant, ctx: OperationContext) {
  return {
    KeyId: keyArn(ctx.deps.scope, g.keyId),
    GrantId: g.grantId,
    ...(g.name !== undefined && { Name: g.name }),
    CreationDate: epochSeconds(g.createdAt),
    GranteePrincipal: g.granteePrincipal,
    ...(g.retiringPrincipal !== undefined && { RetiringPrincipal: g.retiringPrincipal }),
    IssuingAccount: g.issuingAccount,
    Operations: g.operations,
    ...(g.constraints && { Constraints: g.constraints }),
  };
}

/** ListGrants: a key's grants, filterable by grant id and grantee. Limit 1-100, default 50. */
export const listGrants: Operation<{ KeyId: string; GrantId?: string; GranteePrincipal?: string; Limit?: number; Marker?: string }> = {
  schema: Joi.object({
    KeyId: keyIdSchema.required(),
    GrantId: Joi.string().min(1).max(128),
    GranteePrincipal: Joi.string().min(1).max(256),
    GranteeServicePrincipal: Joi.string().min(1).max(128),
    Limit: limitSchema,
    Marker: markerSchema,
  }),
  async handle(input, ctx) {
    const { key } = await useKey(ctx, input.KeyId, { allowAlias: false, action: 'kms:ListGrants' });
    const filter = { keyId: key.keyId, grantId: input.GrantId, granteePrincipal: input.GranteePrincipal };
    const page = await paginate(ctx, `ListGrants/${key.keyId}`, input, { defaultLimit: 50, maxLimit: 100 }, (after, limit) => ctx.deps.keys.listGrants(filter, after, limit));
    return { Grants: page.items.map((g) => grantEntry(g, ctx)), ...page.tail };
  },
};

