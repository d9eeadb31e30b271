import { algorithmsOf, keyPairSpecOf } from '../domain/key-spec';
import { UnsupportedOperationException } from '../errors/kms-errors';
import type { Operation } from './context';
import { grantTokensSchema, Joi, keyIdSchema } from './shared-schemas';
import { checkGrantTokens, useKey } from './use-key';

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
    const { key, arn, material } = await useKey(ctx, input.KeyId, { allowAlias: true, action: 'kms:GetPublicKey', state: 'usableForCrypto', material: 'current' });
    if (!keyPairSpecOf(key.keySpec)) throw new UnsupportedOperationException(`${arn} key spec is ${key.keySpec} which has no public key.`);
    const publicKey = await ctx.deps.hsm.publicKey(material.objects.public);
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
