import { createImportParameters, type WrappingKeySpec } from '../domain/import-material';
import { capabilityProblem, keyPairProblem } from '../hsm/capabilities';
import type { ImportWrappingAlgorithm } from '../hsm/hsm';
import { UnsupportedOperationException } from '../errors/kms-errors';
import { epochSeconds, type Operation } from './context';
import { importableKey } from './imported-key';
import { Joi, keyIdSchema } from './shared-schemas';

interface GetParametersForImportInput {
  KeyId: string;
  WrappingAlgorithm: string;
  WrappingKeySpec: string;
}

/**
 * The public half of an RSA wrapping key pair made on the token for this key, and the import token
 * that names it; both valid for 24 hours (domain/import-material.ts).
 */
export const getParametersForImport: Operation<GetParametersForImportInput> = {
  schema: Joi.object({
    KeyId: keyIdSchema.required(),
    WrappingAlgorithm: Joi.string().valid('RSAES_PKCS1_V1_5', 'RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_1', 'RSA_AES_KEY_WRAP_SHA_256', 'SM2PKE').required(),
    WrappingKeySpec: Joi.string().valid('RSA_2048', 'RSA_3072', 'RSA_4096', 'SM2').required(),
  }),
  async handle(input, ctx) {
    const { key, arn } = await importableKey(ctx, input.KeyId, 'kms:GetParametersForImport');
    if (input.WrappingKeySpec === 'SM2' || input.WrappingAlgorithm === 'SM2PKE') throw new UnsupportedOperationException('SM2 wrapping is offered only in AWS China Regions, and not by this gateway.');
    if (input.WrappingAlgorithm === 'RSAES_PKCS1_V1_5') throw new UnsupportedOperationException('The RSAES_PKCS1_V1_5 wrapping algorithm is no longer supported; use RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256.');
    const caps = ctx.deps.hsm.capabilities();
    const bits = Number(input.WrappingKeySpec.slice('RSA_'.length)) as 2048 | 3072 | 4096;
    const problem =
      keyPairProblem(caps, { family: 'RSA', bits }, 'UNWRAP') ??
      (input.WrappingAlgorithm.startsWith('RSA_AES_') && caps.kwpMechanism === undefined ? capabilityProblem(caps, 'aes-kwp') : undefined);
    if (problem) throw new UnsupportedOperationException(`${input.WrappingKeySpec} with ${input.WrappingAlgorithm}: ${problem}.`);
    const made = await createImportParameters(ctx.deps, key, { wrappingKeySpec: input.WrappingKeySpec as WrappingKeySpec, wrappingAlgorithm: input.WrappingAlgorithm as ImportWrappingAlgorithm });
    return { KeyId: arn, ImportToken: made.importToken.toString('base64'), PublicKey: made.publicKey.toString('base64'), ParametersValidTo: epochSeconds(made.validTo) };
  },
};
