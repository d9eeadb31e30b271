import { unpackBlob } from '../domain/ciphertext-blob';
import { encodeEncryptionContext, type EncryptionContext } from '../domain/encryption-context';
import { assertSymmetricEncryptionKey } from '../domain/key-spec';
import { assertUsableForCrypto } from '../domain/key-state';
import { DryRunOperationException, IncorrectKeyException, InvalidCiphertextException, InvalidKeyUsageException, UnsupportedOperationException } from '../errors/kms-errors';
import type { Operation } from './context';
import { checkGrantTokens, resolveKey } from './key-lookup';
import { dryRunSchema, encryptionContextSchema, grantTokensSchema, Joi, keyIdSchema, recipientSchema } from './shared-schemas';

interface DecryptInput {
  CiphertextBlob: Buffer;
  EncryptionContext?: EncryptionContext;
  GrantTokens?: string[];
  KeyId?: string;
  EncryptionAlgorithm?: string;
  Recipient?: object;
  DryRun?: boolean;
}

const schema = Joi.object({
  CiphertextBlob: Joi.blob().min(1).max(6144).required(),
  EncryptionContext: encryptionContextSchema,
  GrantTokens: grantTokensSchema,
  KeyId: keyIdSchema,
  EncryptionAlgorithm: Joi.string().valid('SYMMETRIC_DEFAULT', 'RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256', 'SM2PKE'),
  Recipient: recipientSchema,
  DryRun: dryRunSchema,
});

/**
 * The key comes from the blob; a KeyId in the request must name that same key, or the answer is
 * IncorrectKeyException (kms-protocol.md §10). A blob whose key is unknown here is not ours.
 */
export const decrypt: Operation<DecryptInput> = {
  schema,
  async handle(input, ctx) {
    const context = encodeEncryptionContext(input.EncryptionContext, ctx.deps.config.maxEncryptionContextBytes);
    if (input.Recipient) throw new UnsupportedOperationException('Recipient (Nitro Enclaves attestation) is not supported by this gateway.');
    await checkGrantTokens(input.GrantTokens, ctx);
    const blob = unpackBlob(input.CiphertextBlob);
    if (input.KeyId !== undefined) {
      const requested = await resolveKey(input.KeyId, ctx, { allowAlias: true });
      if (requested.key.keyId !== blob.keyId) throw IncorrectKeyException.create();
    }
    const { key, arn } = await resolveKey(blob.keyId, ctx, { allowAlias: false }).catch((err) => {
      throw input.KeyId === undefined ? new InvalidCiphertextException('', { cause: err }) : err;
    });
    assertUsableForCrypto(key.state, arn);
    assertSymmetricEncryptionKey(key, arn, 'Decrypt');
    if (input.EncryptionAlgorithm && input.EncryptionAlgorithm !== 'SYMMETRIC_DEFAULT') {
      throw new InvalidKeyUsageException(`Algorithm ${input.EncryptionAlgorithm} is incompatible with key spec ${key.keySpec}.`);
    }
    const material = await ctx.deps.keys.getMaterial(key.keyId, blob.materialVersion);
    if (!material) throw new InvalidCiphertextException();
    if (input.DryRun) throw DryRunOperationException.create();
    const plaintext = await ctx.deps.envelope.open(blob, context);
    return {
      KeyId: arn,
      Plaintext: plaintext.toString('base64'),
      EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      KeyMaterialId: material.materialId,
    };
  },
};
