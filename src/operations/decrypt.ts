import { unpackBlob } from '../domain/ciphertext-blob';
import { encodeEncryptionContext, type EncryptionContext } from '../domain/encryption-context';
import { assertUsableForCrypto } from '../domain/key-state';
import { DryRunOperationException, InvalidCiphertextException, InvalidKeyUsageException, ValidationException } from '../errors/kms-errors';
import { HsmError } from '../hsm/hsm-error';
import type { Operation, OperationContext } from './context';
import { checkGrantTokens, resolveKey } from './key-lookup';
import { isRsaEncryptionKey, oaepFor } from './rsa-crypto';
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
    if (input.EncryptionAlgorithm?.startsWith('RSAES_')) return decryptRsa(input, ctx);
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

/**
 * An RSA ciphertext names no key, so KeyId is required (kms-protocol.md §10 Decrypt); a ciphertext
 * the private key cannot decode is InvalidCiphertextException.
 */
async function decryptRsa(input: DecryptInput, ctx: OperationContext): Promise<Record<string, unknown>> {
  if (input.KeyId === undefined) throw new ValidationException('KeyId is required to decrypt with an asymmetric KMS key.');
  const { key, arn } = await resolveKey(input.KeyId, ctx, { allowAlias: true, action: 'kms:Decrypt' });
  assertUsableForCrypto(key.state, arn);
  if (!isRsaEncryptionKey(key)) throw new InvalidKeyUsageException(`Algorithm ${input.EncryptionAlgorithm} is incompatible with key spec ${key.keySpec} of ${arn}.`);
  const oaep = oaepFor(key, arn, 'Decrypt', { algorithm: input.EncryptionAlgorithm, context: input.EncryptionContext }, ctx);
  if (input.DryRun) throw DryRunOperationException.create();
  try {
    const plaintext = await ctx.deps.hsm.rsaDecrypt(oaep.privateLabel, oaep.hash, input.CiphertextBlob);
    return { KeyId: arn, Plaintext: plaintext.toString('base64'), EncryptionAlgorithm: input.EncryptionAlgorithm };
  } catch (err) {
    // SoftHSM2 answers a ciphertext that does not decode with CKR_ENCRYPTED_DATA_INVALID, _LEN_RANGE or CKR_GENERAL_ERROR.
    if (err instanceof HsmError && (err.kind === 'integrity' || err.ckr === 'CKR_GENERAL_ERROR' || err.ckr === 'CKR_ENCRYPTED_DATA_LEN_RANGE')) {
      throw new InvalidCiphertextException('', { cause: err });
    }
    throw err;
  }
}
