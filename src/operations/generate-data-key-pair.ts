import { encodeEncryptionContext, type EncryptionContext } from '../domain/encryption-context';
import { isSupportedSpec, keyPairSpecOf } from '../domain/key-spec';
import { keyPairProblem } from '../hsm/capabilities';
import { DryRunOperationException, UnsupportedOperationException } from '../errors/kms-errors';
import type { Operation, OperationContext } from './context';
import { dryRunSchema, encryptionContextSchema, grantTokensSchema, Joi, keyIdSchema, recipientSchema, rejectRecipient } from './shared-schemas';
import { checkGrantTokens, SYMMETRIC_ENCRYPTION, useKey } from './use-key';

export interface GenerateDataKeyPairInput {
  KeyId: string;
  KeyPairSpec: string;
  EncryptionContext?: EncryptionContext;
  GrantTokens?: string[];
  Recipient?: object;
  DryRun?: boolean;
}

/** Both operations' members; GenerateDataKeyPair adds Recipient. */
export const dataKeyPairSchema = Joi.object({
  KeyId: keyIdSchema.required(),
  KeyPairSpec: Joi.string()
    .valid('RSA_2048', 'RSA_3072', 'RSA_4096', 'ECC_NIST_P256', 'ECC_NIST_P384', 'ECC_NIST_P521', 'ECC_SECG_P256K1', 'SM2', 'ECC_NIST_EDWARDS25519')
    .required(),
  EncryptionContext: encryptionContextSchema,
  GrantTokens: grantTokensSchema,
  DryRun: dryRunSchema,
});

/** A data key pair made in the HSM; its private key sealed under a symmetric KMS key like Encrypt (Decrypt opens it). */
export const generateDataKeyPair: Operation<GenerateDataKeyPairInput> = {
  schema: dataKeyPairSchema.keys({ Recipient: recipientSchema }),
  async handle(input, ctx) {
    rejectRecipient(input.Recipient);
    const { privateKey, ...sealed } = await newDataKeyPair(input, ctx, 'GenerateDataKeyPair');
    try {
      return { ...sealed, PrivateKeyPlaintext: privateKey.toString('base64') };
    } finally {
      privateKey.fill(0);
    }
  },
};

/**
 * Validation -> grant tokens -> key lookup -> state -> usage, as GenerateDataKey; then the pair is
 * generated in the HSM (session objects, destroyed at once) and the PKCS#8 private key encrypted
 * with AES-256-GCM in the HSM under the KMS key, the encryption context bound as AAD.
 */
export async function newDataKeyPair(input: GenerateDataKeyPairInput, ctx: OperationContext, operation: string) {
  const context = encodeEncryptionContext(input.EncryptionContext, ctx.deps.config.maxEncryptionContextBytes);
  await checkGrantTokens(input.GrantTokens, ctx);
  const facts = { encryptionContext: input.EncryptionContext ?? {} };
  const purpose = { operation, ...SYMMETRIC_ENCRYPTION };
  const target = await useKey(ctx, input.KeyId, { allowAlias: true, action: `kms:${operation}`, facts, state: 'usableForCrypto', purpose, material: 'current' });
  const spec = isSupportedSpec(input.KeyPairSpec) ? keyPairSpecOf(input.KeyPairSpec) : undefined;
  if (!spec) throw new UnsupportedOperationException(`KeyPairSpec ${input.KeyPairSpec} is not supported by this gateway.`);
  const problem = keyPairProblem(ctx.deps.hsm.capabilities(), spec);
  if (problem) throw new UnsupportedOperationException(`KeyPairSpec ${input.KeyPairSpec}: ${problem}.`);
  if (input.DryRun) throw DryRunOperationException.create();
  const pair = await ctx.deps.hsm.generateDataKeyPair(spec);
  let blob: Buffer;
  try {
    blob = await ctx.deps.envelope.encrypt(target.material, pair.privateKey, context);
  } catch (err) {
    pair.privateKey.fill(0);
    throw err;
  }
  return {
    PrivateKeyCiphertextBlob: blob.toString('base64'),
    privateKey: pair.privateKey,
    PublicKey: pair.publicKey.toString('base64'),
    KeyId: target.arn,
    KeyPairSpec: input.KeyPairSpec,
    KeyMaterialId: target.material.materialId,
  };
}
