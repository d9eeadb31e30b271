import { unpackBlob } from '../domain/ciphertext-blob';
import { encodeEncryptionContext, type EncryptionContext } from '../domain/encryption-context';
import { DryRunOperationException } from '../errors/kms-errors';
import type { Operation } from './context';
import { checkGrantTokens } from './key-lookup';
import { dryRunSchema, encryptionAlgorithmSchema, encryptionContextSchema, grantTokensSchema, Joi, keyIdSchema, recipientSchema } from './shared-schemas';
import { keyForDecryption, rejectRecipient } from './symmetric-crypto';

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
  EncryptionAlgorithm: encryptionAlgorithmSchema,
  Recipient: recipientSchema,
  DryRun: dryRunSchema,
});

/** Any blob Encrypt, GenerateDataKey* or ReEncrypt made, of any material version of its key. */
export const decrypt: Operation<DecryptInput> = {
  schema,
  async handle(input, ctx) {
    const context = encodeEncryptionContext(input.EncryptionContext, ctx.deps.config.maxEncryptionContextBytes);
    rejectRecipient(input.Recipient);
    await checkGrantTokens(input.GrantTokens, ctx);
    const blob = unpackBlob(input.CiphertextBlob);
    const source = await keyForDecryption(blob, ctx, {
      operation: 'Decrypt',
      action: 'kms:Decrypt',
      keyId: input.KeyId,
      algorithm: input.EncryptionAlgorithm,
      facts: { encryptionContext: input.EncryptionContext ?? {} },
    });
    if (input.DryRun) throw DryRunOperationException.create();
    const plaintext = await ctx.deps.envelope.open(blob, context);
    return {
      KeyId: source.arn,
      Plaintext: plaintext.toString('base64'),
      EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      KeyMaterialId: source.materialId,
    };
  },
};
