import { encodeEncryptionContext, type EncryptionContext } from '../domain/encryption-context';
import { DATA_KEY_SPEC_BYTES } from '../domain/key-spec';
import { DryRunOperationException, ValidationException } from '../errors/kms-errors';
import type { Operation, OperationContext } from './context';
import { dryRunSchema, encryptionContextSchema, grantTokensSchema, Joi, keyIdSchema, recipientSchema, rejectRecipient } from './shared-schemas';
import { checkGrantTokens, SYMMETRIC_ENCRYPTION, useKey } from './use-key';

interface GenerateDataKeyInput {
  KeyId: string;
  KeySpec?: string;
  NumberOfBytes?: number;
  EncryptionContext?: EncryptionContext;
  GrantTokens?: string[];
  Recipient?: object;
  DryRun?: boolean;
}

export const dataKeySchema = Joi.object({
  KeyId: keyIdSchema.required(),
  KeySpec: Joi.string().valid('AES_256', 'AES_128'),
  NumberOfBytes: Joi.number().integer().min(1).max(1024),
  EncryptionContext: encryptionContextSchema,
  GrantTokens: grantTokensSchema,
  DryRun: dryRunSchema,
});

/** The seed operation: a data key generated and wrapped in the HSM, returned in plaintext and sealed. */
export const generateDataKey: Operation<GenerateDataKeyInput> = {
  schema: dataKeySchema.keys({ Recipient: recipientSchema }),
  async handle(input, ctx) {
    rejectRecipient(input.Recipient);
    const { plaintext, ...sealed } = await newDataKey(input, ctx, 'GenerateDataKey');
    try {
      return { ...sealed, Plaintext: plaintext.toString('base64') };
    } finally {
      plaintext.fill(0);
    }
  },
};

/**
 * GenerateDataKey and GenerateDataKeyWithoutPlaintext. Checks run validation -> grant tokens ->
 * key lookup -> state -> usage (kms-protocol.md §11 item 14), then the HSM work.
 */
export async function newDataKey(input: GenerateDataKeyInput, ctx: OperationContext, operation: string) {
  const lengthBytes = dataKeyLength(input);
  const context = encodeEncryptionContext(input.EncryptionContext, ctx.deps.config.maxEncryptionContextBytes);
  await checkGrantTokens(input.GrantTokens, ctx);
  const facts = { encryptionContext: input.EncryptionContext ?? {} };
  const purpose = { operation, ...SYMMETRIC_ENCRYPTION };
  const target = await useKey(ctx, input.KeyId, { allowAlias: true, action: `kms:${operation}`, facts, state: 'usableForCrypto', purpose, material: 'current' });
  if (input.DryRun) throw DryRunOperationException.create();
  const { plaintext, blob } = await ctx.deps.envelope.sealNewDataKey(target.material, lengthBytes, context);
  return { CiphertextBlob: blob.toString('base64'), plaintext, KeyId: target.arn, KeyMaterialId: target.material.materialId };
}

/** Exactly one of KeySpec and NumberOfBytes [D]; AWS's wording is unverified, this is moto's. */
export function dataKeyLength(input: { KeySpec?: string; NumberOfBytes?: number }): number {
  if ((input.KeySpec === undefined) === (input.NumberOfBytes === undefined)) {
    throw new ValidationException('Please specify either number of bytes or key spec.');
  }
  return input.NumberOfBytes ?? DATA_KEY_SPEC_BYTES[input.KeySpec!];
}
