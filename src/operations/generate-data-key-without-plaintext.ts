import type { Operation } from './context';
import { dataKeySchema, newDataKey } from './generate-data-key';

/** GenerateDataKey without the plaintext (kms-protocol.md §10): the data key never leaves the gateway. */
export const generateDataKeyWithoutPlaintext: Operation = {
  schema: dataKeySchema,
  async handle(input, ctx) {
    const { plaintext, ...sealed } = await newDataKey(input, ctx, 'GenerateDataKeyWithoutPlaintext');
    plaintext.fill(0);
    return sealed;
  },
};
