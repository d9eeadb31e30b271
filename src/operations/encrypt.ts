import { encodeEncryptionContext, type EncryptionContext } from '../domain/encryption-context';
import { DryRunOperationException } from '../errors/kms-errors';
import type { Operation } from './context';
import { assertUsableForCrypto } from '../domain/key-state';
import { checkGrantTokens, resolveKey } from './key-lookup';
import { assertOaepPlaintextFits, isRsaEncryptionKey, oaepFor } from './rsa-crypto';
import { dryRunSchema, encryptionAlgorithmSchema, encryptionContextSchema, grantTokensSchema, Joi, keyIdSchema } from './shared-schemas';
import { checkForEncryption } from './symmetric-crypto';

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
    const context = encodeEncryptionContext(input.EncryptionContext, ctx.deps.config.maxEncryptionContextBytes);
    await checkGrantTokens(input.GrantTokens, ctx);
    const resolved = await resolveKey(input.KeyId, ctx, { allowAlias: true, action: 'kms:Encrypt', facts: { encryptionContext: input.EncryptionContext ?? {} } });
    assertUsableForCrypto(resolved.key.state, resolved.arn);
    if (isRsaEncryptionKey(resolved.key)) {
      const algorithm = input.EncryptionAlgorithm;
      const oaep = oaepFor(resolved.key, resolved.arn, 'Encrypt', { algorithm, context: input.EncryptionContext }, ctx);
      assertOaepPlaintextFits(resolved.key, algorithm!, oaep.hash, input.Plaintext);
      if (input.DryRun) throw DryRunOperationException.create();
      const ciphertext = await ctx.deps.hsm.rsaEncrypt(oaep.publicLabel, oaep.hash, input.Plaintext);
      return { CiphertextBlob: ciphertext.toString('base64'), KeyId: resolved.arn, EncryptionAlgorithm: algorithm };
    }
    const target = await checkForEncryption(resolved, ctx, { operation: 'Encrypt', algorithm: input.EncryptionAlgorithm });
    if (input.DryRun) throw DryRunOperationException.create();
    const blob = await ctx.deps.envelope.encrypt(target.key.keyId, target.version, input.Plaintext, context);
    return { CiphertextBlob: blob.toString('base64'), KeyId: target.arn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
  },
};
