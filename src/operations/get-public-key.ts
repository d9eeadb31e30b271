import { algorithmsOf, keyPairSpecOf } from '../domain/key-spec';
import { assertUsableForCrypto } from '../domain/key-state';
import { UnsupportedOperationException } from '../errors/kms-errors';
import type { Operation } from './context';
import { checkGrantTokens, currentMaterial, resolveKey } from './key-lookup';
import { grantTokensSchema, Joi, keyIdSchema } from './shared-schemas';

interface GetPublicKeyInput {
  KeyId: string;
  GrantTokens?: string[];
}

/**
 * The public key of an asymmetric key as DER SubjectPublicKeyInfo, read from the token. Symmetric
 * and HMAC keys have none: UnsupportedOperationException [U: AWS may answer InvalidKeyUsageException].
 * A Disabled key is DisabledException, as the AWS key-state table says [D; U in practice].
 */
export const getPublicKey: Operation<GetPublicKeyInput> = {
  schema: Joi.object({ KeyId: keyIdSchema.required(), GrantTokens: grantTokensSchema }),
  async handle(input, ctx) {
    await checkGrantTokens(input.GrantTokens, ctx);
    const { key, arn } = await resolveKey(input.KeyId, ctx, { allowAlias: true, action: 'kms:GetPublicKey' });
    assertUsableForCrypto(key.state, arn);
    if (!keyPairSpecOf(key.keySpec)) throw new UnsupportedOperationException(`${arn} key spec is ${key.keySpec} which has no public key.`);
    const publicKey = await ctx.deps.hsm.publicKey((await currentMaterial(ctx, key)).objects.public);
    return {
      KeyId: arn,
      PublicKey: publicKey.toString('base64'),
      CustomerMasterKeySpec: key.keySpec,
      KeySpec: key.keySpec,
      KeyUsage: key.keyUsage,
      ...algorithmsOf(key),
    };
  },
};
