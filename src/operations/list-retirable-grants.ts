import { authorize } from './authorize';
import type { Operation } from './context';
import { grantEntry } from './list-grants';
import { paginate } from './paginate';
import { Joi, limitSchema, markerSchema } from './shared-schemas';

/** ListRetirableGrants: the grants a principal may retire, across keys. Limit 1-100, default 50. */
export const listRetirableGrants: Operation<{ RetiringPrincipal: string; Limit?: number; Marker?: string }> = {
  schema: Joi.object({ RetiringPrincipal: Joi.string().min(1).max(256).required(), Limit: limitSchema, Marker: markerSchema }),
  async handle(input, ctx) {
    await authorize(ctx, 'kms:ListRetirableGrants');
    const filter = { retiringPrincipal: input.RetiringPrincipal };
    const page = await paginate(ctx, `ListRetirableGrants/${input.RetiringPrincipal}`, input, { defaultLimit: 50, maxLimit: 100 }, (after, limit) =>
      ctx.deps.keys.listGrants(filter, after, limit),
    );
    return { Grants: page.items.map((g) => grantEntry(g, ctx)), ...page.tail };
  },
};
