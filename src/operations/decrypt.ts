import { encodeEncryptionContext, type EncryptionContext } from '../domain/encryption-context';
import { DryRunOperationException } from '../errors/kms-errors';
import type { Operation } from './context';
import { planOpen } from './crypto-plans';
import { dryRunSchema, encryptionAlgorithmSchema, encryptionContextSchema, grantTokensSchema, Joi, keyIdSchema, recipientSchema, rejectRecipient } from './shared-schemas';
import { checkGrantTokens } from './use-key';

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

/** Any blob Encrypt, GenerateDataKey* or ReEncrypt made, of any material version of its key; RSA-OAEP ciphertexts with KeyId. */
export const decrypt: Operation<DecryptInput> = {
  schema,
  async handle(input, ctx) {
    const encoded = encodeEncryptionContext(input.EncryptionContext, ctx.deps.config.maxEncryptionContextBytes);
    rejectRecipient(input.Recipient);
    await checkGrantTokens(input.GrantTokens, ctx);
    const request = { keyId: input.KeyId, algorithm: input.EncryptionAlgorithm, context: input.EncryptionContext, encoded };
    const plan = await planOpen(input.CiphertextBlob, request, ctx, { operation: 'Decrypt', action: 'kms:Decrypt' });
    if (input.DryRun) throw DryRunOperationException.create();
    const plaintext = await plan.open();
    return {
      KeyId: plan.arn,
      Plaintext: plaintext.toString('base64'),
      EncryptionAlgorithm: plan.algorithm,
      ...(plan.materialId && { KeyMaterialId: plan.materialId }),
    };
  },
};
