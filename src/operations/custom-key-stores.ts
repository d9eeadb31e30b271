import { CustomKeyStoreNotFoundException } from '../errors/kms-errors';
import { Joi } from './shared-schemas';

/**
 * Custom key stores (AWS CloudHSM clusters and external key stores behind an XKS proxy) do not
 * exist in a QKMS deployment: QKMS is itself the key store in front of its HSM. The custom key
 * store operations answer as AWS answers an account that has none — an empty list, and
 * CustomKeyStoreNotFoundException for any id or name — rather than UnknownOperationException, so
 * that tools which list them (the AWS console's equivalents, Terraform refreshes) work.
 */
export const customKeyStoreIdSchema = Joi.string().min(1).max(64);
export const customKeyStoreNameSchema = Joi.string().min(1).max(256);

export function noSuchCustomKeyStore(id: string): never {
  throw CustomKeyStoreNotFoundException.create(id);
}
