import crypto from 'node:crypto';
import { SUPPORTED_SPECS } from '../domain/key-spec';
import { DryRunOperationException, ValidationException } from '../errors/kms-errors';
import type { Operation } from './context';
import { dryRunSchema, grantTokensSchema, Joi, keyIdSchema, recipientSchema, rejectRecipient } from './shared-schemas';
import { checkGrantTokens, useKey } from './use-key';

interface DeriveSharedSecretInput {
  KeyId: string;
  KeyAgreementAlgorithm: string;
  PublicKey: Buffer;
  GrantTokens?: string[];
  DryRun?: boolean;
  Recipient?: object;
}

/** node:crypto's names for the curves of KEY_AGREEMENT keys (asymmetricKeyDetails.namedCurve). */
const NODE_CURVE: Record<string, string> = { 'P-256': 'prime256v1', 'P-384': 'secp384r1', 'P-521': 'secp521r1' };

/**
 * ECDH in the HSM between a KEY_AGREEMENT key's private key and the peer's public key (DER SPKI on
 * the same curve): the raw shared secret (the X coordinate), as AWS returns it.
 */
export const deriveSharedSecret: Operation<DeriveSharedSecretInput> = {
  schema: Joi.object({
    KeyId: keyIdSchema.required(),
    KeyAgreementAlgorithm: Joi.string().valid('ECDH').required(),
    PublicKey: Joi.blob().min(1).max(8192).required(),
    GrantTokens: grantTokensSchema,
    DryRun: dryRunSchema,
    Recipient: recipientSchema,
  }),
  async handle(input, ctx) {
    rejectRecipient(input.Recipient);
    await checkGrantTokens(input.GrantTokens, ctx);
    const purpose = { operation: 'DeriveSharedSecret', usage: 'KEY_AGREEMENT', algorithm: input.KeyAgreementAlgorithm } as const;
    const { key, arn, material } = await useKey(ctx, input.KeyId, { allowAlias: true, action: 'kms:DeriveSharedSecret', state: 'usableForCrypto', purpose, material: 'current' });
    const kind = SUPPORTED_SPECS[key.keySpec].material;
    const curve = kind.family === 'EC' ? kind.curve : '';
    const peerPoint = peerPublicPoint(input.PublicKey, NODE_CURVE[curve], key.keySpec);
    if (input.DryRun) throw DryRunOperationException.create();
    const secret = await ctx.deps.hsm.deriveSharedSecret(material.objects.private, peerPoint);
    try {
      return { KeyId: arn, SharedSecret: secret.toString('base64'), KeyAgreementAlgorithm: 'ECDH', KeyOrigin: 'AWS_KMS' };
    } finally {
      secret.fill(0);
    }
  },
};

/** The peer's SPKI as an uncompressed point on the key's curve; anything else is ValidationException with an empty message, as AWS answers (recorded). */
function peerPublicPoint(spki: Buffer, nodeCurve: string, keySpec: string): Buffer {
  let jwk: crypto.JsonWebKey;
  try {
    const peer = crypto.createPublicKey({ key: spki, format: 'der', type: 'spki' });
    if (peer.asymmetricKeyType !== 'ec' || peer.asymmetricKeyDetails?.namedCurve !== nodeCurve) throw new Error('curve');
    jwk = peer.export({ format: 'jwk' });
  } catch {
    throw new ValidationException('');
  }
  return Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
}
