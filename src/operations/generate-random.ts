import { ValidationException } from '../errors/kms-errors';
import { authorize } from './authorize';
import type { Operation } from './context';
import { noSuchCustomKeyStore } from './custom-key-stores';
import { Joi, recipientSchema, rejectRecipient } from './shared-schemas';

interface GenerateRandomInput {
  NumberOfBytes?: number;
  CustomKeyStoreId?: string;
  Recipient?: object;
}

const schema = Joi.object({
  NumberOfBytes: Joi.number().integer().min(1).max(1024),
  CustomKeyStoreId: Joi.string().min(1).max(64),
  Recipient: recipientSchema,
});

/** C_GenerateRandom on the token. NumberOfBytes is optional in the model but required in practice [O]. */
export const generateRandom: Operation<GenerateRandomInput> = {
  schema,
  async handle(input, ctx) {
    if (input.NumberOfBytes === undefined) throw new ValidationException('NumberOfBytes is required.');
    if (input.CustomKeyStoreId) noSuchCustomKeyStore(input.CustomKeyStoreId);
    rejectRecipient(input.Recipient);
    await authorize(ctx, 'kms:GenerateRandom');
    return { Plaintext: (await ctx.deps.hsm.randomBytes(input.NumberOfBytes)).toString('base64') };
  },
};
