import { encodeEncryptionContext, type EncryptionContext } from '../domain/encryption-context';
import { DryRunOperationException } from '../errors/kms-errors';
import type { Operation } from './context';
import { planSeal } from './crypto-plans';
import { dryRunSchema, encryptionAlgorithmSchema, encryptionContextSchema, grantTokensSchema, Joi, keyIdSchema } from './shared-schemas';
import { checkGrantTokens } from './use-key';

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

/**
 * Symmetric keys: AES-256-GCM inside the HSM under the key's current material, context bound as
 * AAD (docs/crypto.md). RSA ENCRYPT_DECRYPT keys: RSAES-OAEP with the public key in the HSM; the
 * ciphertext is the raw OAEP output, as AWS returns it.
 */
export const encrypt: Operation<EncryptInput> = {
  schema,
  async handle(input, ctx) {
    const encoded = encodeEncryptionContext(input.EncryptionContext, ctx.deps.config.maxEncryptionContextBytes);
    await checkGrantTokens(input.GrantTokens, ctx);
    const request = { algorithm: input.EncryptionAlgorithm, context: input.EncryptionContext, encoded, plaintext: input.Plaintext };
    const plan = await planSeal(input.KeyId, request, ctx, { operation: 'Encrypt', action: 'kms:Encrypt' });
    plan.assertFits(input.Plaintext);
    if (input.DryRun) throw DryRunOperationException.create();
    const ciphertext = await plan.seal(input.Plaintext);
    return { CiphertextBlob: ciphertext.toString('base64'), KeyId: plan.arn, EncryptionAlgorithm: plan.algorithm };
  },
};
