import { grantOfToken } from '../domain/grant-token';
import { parseKeyRef } from '../domain/key-ref';
import { AccessDeniedException, DryRunOperationException, InvalidGrantIdException, NotFoundException, ValidationException } from '../errors/kms-errors';
import type { Operation } from './context';
import { dryRunSchema, Joi, keyIdSchema } from './shared-schemas';

export const grantIdSchema = Joi.string().min(1).max(128);

/**
 * RetireGrant: by GrantToken, or by KeyId and GrantId. Allowed to the grant's retiring principal,
 * to its grantee when the grant includes RetireGrant, and to the issuing account's root — not
 * governed by the key policy [D].
 */
export const retireGrant: Operation<{ GrantToken?: string; KeyId?: string; GrantId?: string; DryRun?: boolean }> = {
  schema: Joi.object({ GrantToken: Joi.string().min(1).max(8192), KeyId: keyIdSchema, GrantId: grantIdSchema, DryRun: dryRunSchema }),
  async handle(input, ctx) {
    let grantId: string;
    if (input.GrantToken !== undefined) {
      grantId = await grantOfToken(input.GrantToken, (id) => ctx.deps.keys.grantTokenHashes(id));
    } else if (input.KeyId !== undefined && input.GrantId !== undefined) {
      grantId = input.GrantId;
    } else {
      throw new ValidationException('Either GrantToken, or both KeyId and GrantId, must be specified.');
    }
    const grant = await ctx.deps.keys.getGrant(grantId);
    if (!grant) throw InvalidGrantIdException.notFound(grantId);
    if (input.KeyId !== undefined) {
      const ref = parseKeyRef(input.KeyId);
      if (ref.kind !== 'keyId' && ref.kind !== 'keyArn') throw NotFoundException.invalidKeyId(input.KeyId);
      // As every KeyId (use-key.ts): another region's ARN names another record, whose grants are not this region's.
      if (ref.kind === 'keyArn' && ref.region !== undefined && ref.region !== ctx.deps.scope.region) throw NotFoundException.invalidArnRegion(ref.region);
      if (ref.keyId !== grant.keyId) throw InvalidGrantIdException.notFound(grantId);
    }
    const who = ctx.principal.principalArn;
    const mayRetire = who === grant.retiringPrincipal || (who === grant.granteePrincipal && grant.operations.includes('RetireGrant')) || who === grant.issuingAccount;
    if (!mayRetire) throw new AccessDeniedException(`User: ${who} is not authorized to perform: kms:RetireGrant on grant ${grantId}`);
    if (input.DryRun) throw DryRunOperationException.create();
    await ctx.deps.keys.deleteGrant(grantId);
    return undefined;
  },
};

