import { encodeEncryptionContext, type EncryptionContext } from '../domain/encryption-context';
import { DryRunOperationException } from '../errors/kms-errors';
import type { Operation } from './context';
import { checkGrantTokens } from './key-lookup';
import { dryRunSchema, encryptionAlgorithmSchema, encryptionContextSchema, grantTokensSchema, Joi, keyIdSchema } from './shared-schemas';
import { keyForEncryption } from './symmetric-crypto';

interface EncryptInput {
  KeyId: string;
  Plaintext: Buffer;
  EncryptionContext?: EncryptionContext;
  GrantTokens?: string[];
  EncryptionAlgorithm?: string;
  DryRun?: boolean;
}

const schema = Joi.object({
  KeyId: keyIdSchema.required(),
  Plaintext: Joi.blob().min(1).max(4096).required(),
  EncryptionContext: encryptionContextSchema,
  GrantTokens: grantTokensSchema,
  EncryptionAlgorithm: encryptionAlgorithmSchema,
  DryRun: dryRunSchema,
});

/** AES-256-GCM inside the HSM under the key's current material, context bound as AAD (docs/crypto.md). */
export const encrypt: Operation<EncryptInput> = {
  schema,
  async handle(input, ctx) {
    const context = encodeEncryptionContext(input.EncryptionContext, ctx.deps.config.maxEncryptionContextBytes);
    await checkGrantTokens(input.GrantTokens, ctx);
    const target = await keyForEncryption(input.KeyId, ctx, {
      operation: 'Encrypt',
      action: 'kms:Encrypt',
      algorithm: input.EncryptionAlgorithm,
      facts: { encryptionContext: input.EncryptionContext ?? {} },
    });
    if (input.DryRun) throw DryRunOperationException.create();
    const blob = await ctx.deps.envelope.encrypt(target.key.keyId, target.version, input.Plaintext, context);
    return { CiphertextBlob: blob.toString('base64'), KeyId: target.arn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
  },
};
