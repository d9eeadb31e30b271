import type { Operation } from './context';
import { dataKeyPairSchema, newDataKeyPair, type GenerateDataKeyPairInput } from './generate-data-key-pair';

/** GenerateDataKeyPair without the private key in plaintext: only its blob and the public key. */
export const generateDataKeyPairWithoutPlaintext: Operation<GenerateDataKeyPairInput> = {
  schema: dataKeyPairSchema,
  async handle(input, ctx) {
    const { privateKey, ...sealed } = await newDataKeyPair(input, ctx, 'GenerateDataKeyPairWithoutPlaintext');
    privateKey.fill(0);
    return sealed;
  },
};
