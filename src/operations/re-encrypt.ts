import { encodeEncryptionContext, type EncryptionContext } from '../domain/encryption-context';
import { DryRunOperationException } from '../errors/kms-errors';
import type { Operation } from './context';
import { planOpen, planSeal } from './crypto-plans';
import { dryRunSchema, encryptionAlgorithmSchema, encryptionContextSchema, grantTokensSchema, Joi, keyIdSchema } from './shared-schemas';
import { checkGrantTokens } from './use-key';

interface ReEncryptInput {
  CiphertextBlob: Buffer;
  SourceEncryptionContext?: EncryptionContext;
  SourceKeyId?: string;
  DestinationKeyId: string;
  DestinationEncryptionContext?: EncryptionContext;
  SourceEncryptionAlgorithm?: string;
  DestinationEncryptionAlgorithm?: string;
  GrantTokens?: string[];
  DryRun?: boolean;
}

const schema = Joi.object({
  CiphertextBlob: Joi.blob().min(1).max(6144).required(),
  SourceEncryptionContext: encryptionContextSchema,
  SourceKeyId: keyIdSchema,
  DestinationKeyId: keyIdSchema.required(),
  DestinationEncryptionContext: encryptionContextSchema,
  SourceEncryptionAlgorithm: encryptionAlgorithmSchema,
  DestinationEncryptionAlgorithm: encryptionAlgorithmSchema,
  GrantTokens: grantTokensSchema,
  DryRun: dryRunSchema,
});

/**
 * Decrypt under the source key and Encrypt under the destination, both in the HSM, with either kind
 * of key (symmetric or RSA ENCRYPT_DECRYPT). The source is checked as for Decrypt and the
 * destination as for Encrypt (kms-protocol.md §10, [U] recommended), both before any cryptography.
 * A symmetric destination gives a GCM blob (mechanism 0x02) whatever the source was.
 */
export const reEncrypt: Operation<ReEncryptInput> = {
  schema,
  async handle(input, ctx) {
    const { maxEncryptionContextBytes } = ctx.deps.config;
    const sourceEncoded = encodeEncryptionContext(input.SourceEncryptionContext, maxEncryptionContextBytes);
    const destinationEncoded = encodeEncryptionContext(input.DestinationEncryptionContext, maxEncryptionContextBytes);
    await checkGrantTokens(input.GrantTokens, ctx);
    const source = await planOpen(
      input.CiphertextBlob,
      { keyId: input.SourceKeyId, algorithm: input.SourceEncryptionAlgorithm, context: input.SourceEncryptionContext, encoded: sourceEncoded },
      ctx,
      { operation: 'ReEncrypt', action: 'kms:ReEncryptFrom' },
    );
    const destination = await planSeal(
      input.DestinationKeyId,
      { algorithm: input.DestinationEncryptionAlgorithm, context: input.DestinationEncryptionContext, encoded: destinationEncoded },
      ctx,
      { operation: 'ReEncrypt', action: 'kms:ReEncryptTo' },
    );
    if (input.DryRun) throw DryRunOperationException.create();
    const plaintext = await source.open();
    try {
      const sealed = await destination.seal(plaintext);
      return {
        CiphertextBlob: sealed.toString('base64'),
        SourceKeyId: source.arn,
        KeyId: destination.arn,
        SourceEncryptionAlgorithm: source.algorithm,
        DestinationEncryptionAlgorithm: destination.algorithm,
        ...(source.materialId && { SourceKeyMaterialId: source.materialId }),
        ...(destination.materialId && { DestinationKeyMaterialId: destination.materialId }),
      };
    } finally {
      plaintext.fill(0);
    }
  },
};
