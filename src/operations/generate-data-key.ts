import { encodeEncryptionContext, type EncryptionContext } from '../domain/encryption-context';
import { assertSymmetricEncryptionKey, DATA_KEY_SPEC_BYTES } from '../domain/key-spec';
import { assertUsableForCrypto } from '../domain/key-state';
import { DryRunOperationException, UnsupportedOperationException, ValidationException } from '../errors/kms-errors';
import type { Operation } from './context';
import { checkGrantTokens, resolveKey } from './key-lookup';
import { dryRunSchema, encryptionContextSchema, grantTokensSchema, Joi, keyIdSchema, recipientSchema } from './shared-schemas';

interface GenerateDataKeyInput {
  KeyId: string;
  KeySpec?: string;
  NumberOfBytes?: number;
  EncryptionContext?: EncryptionContext;
  GrantTokens?: string[];
  Recipient?: object;
  DryRun?: boolean;
}

const schema = Joi.object({
  KeyId: keyIdSchema.required(),
  KeySpec: Joi.string().valid('AES_256', 'AES_128'),
  NumberOfBytes: Joi.number().integer().min(1).max(1024),
  EncryptionContext: encryptionContextSchema,
  GrantTokens: grantTokensSchema,
  Recipient: recipientSchema,
  DryRun: dryRunSchema,
});

/**
 * The seed operation. Checks run in the order validation -> grant tokens -> key lookup -> state ->
 * usage (kms-protocol.md §11 item 14); then the data key is generated and wrapped in the HSM.
 */
export const generateDataKey: Operation<GenerateDataKeyInput> = {
  schema,
  async handle(input, ctx) {
    const lengthBytes = dataKeyLength(input);
    const context = encodeEncryptionContext(input.EncryptionContext, ctx.deps.config.maxEncryptionContextBytes);
    if (input.Recipient) throw new UnsupportedOperationException('Recipient (Nitro Enclaves attestation) is not supported by this gateway.');
    await checkGrantTokens(input.GrantTokens, ctx);
    const { key, arn } = await resolveKey(input.KeyId, ctx, { allowAlias: true });
    assertUsableForCrypto(key.state, arn);
    assertSymmetricEncryptionKey(key, arn, 'GenerateDataKey');
    if (input.DryRun) throw DryRunOperationException.create();
    const material = await ctx.deps.keys.getMaterial(key.keyId, key.currentMaterialVersion);
    const { plaintext, blob } = await ctx.deps.envelope.sealNewDataKey(key.keyId, key.currentMaterialVersion, lengthBytes, context);
    return {
      CiphertextBlob: blob.toString('base64'),
      Plaintext: plaintext.toString('base64'),
      KeyId: arn,
      ...(material && { KeyMaterialId: material.materialId }),
    };
  },
};

/** Exactly one of KeySpec and NumberOfBytes [D]; AWS's wording is unverified, this is moto's. */
export function dataKeyLength(input: { KeySpec?: string; NumberOfBytes?: number }): number {
  if ((input.KeySpec === undefined) === (input.NumberOfBytes === undefined)) {
    throw new ValidationException('Please specify either number of bytes or key spec.');
  }
  return input.NumberOfBytes ?? DATA_KEY_SPEC_BYTES[input.KeySpec!];
}
