import { unpackBlob } from '../domain/ciphertext-blob';
import { encodeEncryptionContext, type EncryptionContext } from '../domain/encryption-context';
import { DryRunOperationException } from '../errors/kms-errors';
import type { Operation } from './context';
import { checkGrantTokens } from './key-lookup';
import { dryRunSchema, encryptionAlgorithmSchema, encryptionContextSchema, grantTokensSchema, Joi, keyIdSchema } from './shared-schemas';
import { keyForDecryption, keyForEncryption } from './symmetric-crypto';

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
 * Decrypt under the source key and Encrypt under the destination, both in the HSM. The source is
 * checked as for Decrypt and the destination as for Encrypt (kms-protocol.md §10, [U] recommended),
 * both before any cryptography. The result is a GCM blob (mechanism 0x02) whatever the source was.
 */
export const reEncrypt: Operation<ReEncryptInput> = {
  schema,
  async handle(input, ctx) {
    const { maxEncryptionContextBytes } = ctx.deps.config;
    const sourceContext = encodeEncryptionContext(input.SourceEncryptionContext, maxEncryptionContextBytes);
    const destinationContext = encodeEncryptionContext(input.DestinationEncryptionContext, maxEncryptionContextBytes);
    await checkGrantTokens(input.GrantTokens, ctx);
    const blob = unpackBlob(input.CiphertextBlob);
    const source = await keyForDecryption(blob, ctx, {
      operation: 'ReEncrypt',
      action: 'kms:ReEncryptFrom',
      keyId: input.SourceKeyId,
      algorithm: input.SourceEncryptionAlgorithm,
      facts: { encryptionContext: input.SourceEncryptionContext ?? {} },
    });
    const destination = await keyForEncryption(input.DestinationKeyId, ctx, {
      operation: 'ReEncrypt',
      action: 'kms:ReEncryptTo',
      algorithm: input.DestinationEncryptionAlgorithm,
      facts: { encryptionContext: input.DestinationEncryptionContext ?? {} },
    });
    if (input.DryRun) throw DryRunOperationException.create();
    const plaintext = await ctx.deps.envelope.open(blob, sourceContext);
    try {
      const sealed = await ctx.deps.envelope.encrypt(destination.key.keyId, destination.version, plaintext, destinationContext);
      return {
        CiphertextBlob: sealed.toString('base64'),
        SourceKeyId: source.arn,
        KeyId: destination.arn,
        SourceEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        DestinationEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        SourceKeyMaterialId: source.materialId,
        DestinationKeyMaterialId: destination.materialId,
      };
    } finally {
      plaintext.fill(0);
    }
  },
};
