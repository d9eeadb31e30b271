import crypto from 'node:crypto';
import { formatGrantToken, hashSecret } from '../domain/grant-token';
import type { Grant, GrantConstraints } from '../domain/key-repository';
import { DryRunOperationException, LimitExceededException, UnsupportedOperationException, ValidationException } from '../errors/kms-errors';
import type { Operation } from './context';
import { dryRunSchema, encryptionContextSchema, grantTokensSchema, Joi, keyIdSchema } from './shared-schemas';
import { checkGrantTokens, useKey } from './use-key';

/** kms-protocol.md §9 GrantOperation. */
export const GRANT_OPERATIONS = [
  'Decrypt', 'Encrypt', 'GenerateDataKey', 'GenerateDataKeyWithoutPlaintext', 'ReEncryptFrom', 'ReEncryptTo', 'Sign', 'Verify',
  'GetPublicKey', 'CreateGrant', 'RetireGrant', 'DescribeKey', 'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext',
  'GenerateMac', 'VerifyMac', 'DeriveSharedSecret',
];
/** What each kind of key can be granted (every kind: CreateGrant, RetireGrant, DescribeKey), and which take an encryption context (constraints). */
const ANY_KEY = ['CreateGrant', 'RetireGrant', 'DescribeKey'];
const SYMMETRIC_OPERATIONS = new Set(['Decrypt', 'Encrypt', 'GenerateDataKey', 'GenerateDataKeyWithoutPlaintext', 'ReEncryptFrom', 'ReEncryptTo',
  'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext', ...ANY_KEY]);
const OPERATIONS_BY_USAGE: Record<string, Set<string>> = {
  SIGN_VERIFY: new Set(['Sign', 'Verify', 'GetPublicKey', ...ANY_KEY]),
  ENCRYPT_DECRYPT: new Set(['Encrypt', 'Decrypt', 'ReEncryptFrom', 'ReEncryptTo', 'GetPublicKey', ...ANY_KEY]), // RSA
  GENERATE_VERIFY_MAC: new Set(['GenerateMac', 'VerifyMac', ...ANY_KEY]),
  KEY_AGREEMENT: new Set(['DeriveSharedSecret', 'GetPublicKey', ...ANY_KEY]),
};
const CONTEXT_OPERATIONS = new Set(['Decrypt', 'Encrypt', 'GenerateDataKey', 'GenerateDataKeyWithoutPlaintext', 'ReEncryptFrom', 'ReEncryptTo',
  'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext', 'CreateGrant', 'RetireGrant']);
const GRANTS_PER_KEY = 50000;
const principalSchema = Joi.string().min(1).max(256).pattern(/^[\w+=,.@:/-]+$/);
/** "Each constraint value can include up to 8 encryption context pairs … cannot exceed 384 characters" (CreateGrant, AWS API reference). */
const constraintSchema = encryptionContextSchema.maxPairs(8).maxValue(384);

interface CreateGrantInput {
  KeyId: string;
  GranteePrincipal?: string;
  GranteeServicePrincipal?: string;
  RetiringPrincipal?: string;
  RetiringServicePrincipal?: string;
  Operations: string[];
  Constraints?: GrantConstraints & { SourceArn?: string };
  GrantTokens?: string[];
  Name?: string;
  DryRun?: boolean;
}

const schema = Joi.object({
  KeyId: keyIdSchema.required(),
  GranteePrincipal: principalSchema,
  GranteeServicePrincipal: Joi.string().min(1).max(128),
  RetiringPrincipal: principalSchema,
  RetiringServicePrincipal: Joi.string().min(1).max(128),
  Operations: Joi.array().items(Joi.string().valid(...GRANT_OPERATIONS)).min(1).required(),
  Constraints: Joi.object({ EncryptionContextEquals: constraintSchema, EncryptionContextSubset: constraintSchema, SourceArn: Joi.string().min(20).max(512) }),
  GrantTokens: grantTokensSchema,
  Name: Joi.string().min(1).max(256).pattern(/^[a-zA-Z0-9:/_-]+$/),
  DryRun: dryRunSchema,
});

/**
 * A grant lets GranteePrincipal perform Operations on the key, within Constraints, without a
 * policy change; it works at once. The same Name with the same parameters returns the same
 * GrantId with a new token [D]. Key must be Enabled (D1/S3, kms-protocol.md §5).
 */
export const createGrant: Operation<CreateGrantInput> = {
  schema,
  async handle(input, ctx) {
    if (input.GranteeServicePrincipal || input.RetiringServicePrincipal || input.Constraints?.SourceArn) {
      throw new UnsupportedOperationException('AWS service principals are not supported by this gateway.');
    }
    if (!input.GranteePrincipal) throw new ValidationException("1 validation error detected: Value at 'granteePrincipal' failed to satisfy constraint: Member must not be null");
    const operations = [...new Set(input.Operations)].sort();
    const constraints = input.Constraints && (input.Constraints.EncryptionContextEquals || input.Constraints.EncryptionContextSubset) ? input.Constraints : undefined;
    await checkGrantTokens(input.GrantTokens, ctx);
    const { key, arn } = await useKey(ctx, input.KeyId, {
      allowAlias: false,
      action: 'kms:CreateGrant',
      facts: { grantOperations: operations },
      state: 'usableForCrypto',
    });
    const allowed = key.keySpec === 'SYMMETRIC_DEFAULT' ? SYMMETRIC_OPERATIONS : OPERATIONS_BY_USAGE[key.keyUsage];
    const invalid = operations.filter((op) => !allowed.has(op));
    if (invalid.length > 0) throw new ValidationException(`Grant operations ${invalid.join(', ')} are not valid for key spec ${key.keySpec}.`);
    if (constraints && operations.some((op) => !CONTEXT_OPERATIONS.has(op))) {
      throw new ValidationException('Grant constraints are supported only for operations that accept an encryption context.');
    }
    if (input.DryRun) throw DryRunOperationException.create();
    const requested = { granteePrincipal: input.GranteePrincipal, retiringPrincipal: input.RetiringPrincipal, operations, constraints };
    const grant: Grant = {
      grantId: crypto.randomBytes(32).toString('hex'),
      keyId: key.keyId,
      name: input.Name,
      ...requested,
      issuingAccount: `arn:aws:iam::${ctx.deps.config.accountId}:root`,
      createdAt: ctx.deps.clock(),
    };
    // The same Name with the same parameters is the same grant with one more token, decided where
    // it is written, as is the quota: concurrent CreateGrants (on this or another replica) agree.
    const secret = crypto.randomBytes(32);
    const grantId = await ctx.deps.keys.insertGrant(grant, hashSecret(secret), GRANTS_PER_KEY, (g) => sameParameters(g, requested));
    if (grantId === 'quota') throw new LimitExceededException(`${arn} already has ${GRANTS_PER_KEY} grants.`);
    return { GrantToken: formatGrantToken(grantId, secret), GrantId: grantId };
  },
};

function sameParameters(g: Grant, r: Pick<Grant, 'granteePrincipal' | 'retiringPrincipal' | 'operations' | 'constraints'>): boolean {
  return (
    g.granteePrincipal === r.granteePrincipal &&
    g.retiringPrincipal === r.retiringPrincipal &&
    JSON.stringify(g.operations) === JSON.stringify(r.operations) &&
    canonical(g.constraints) === canonical(r.constraints)
  );
}

function canonical(c: GrantConstraints | undefined): string {
  const sorted = (m?: Record<string, string>) => (m ? Object.fromEntries(Object.entries(m).sort()) : undefined);
  return JSON.stringify({ e: sorted(c?.EncryptionContextEquals), s: sorted(c?.EncryptionContextSubset) });
}
