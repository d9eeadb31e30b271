import { CloudHsmClusterNotFoundException, UnsupportedOperationException } from '../errors/kms-errors';
import { authorize } from './authorize';
import type { Operation } from './context';
import { customKeyStoreNameSchema } from './custom-key-stores';
import { Joi } from './shared-schemas';

interface CreateCustomKeyStoreInput {
  CustomKeyStoreName: string;
  CloudHsmClusterId?: string;
  CustomKeyStoreType?: 'AWS_CLOUDHSM' | 'EXTERNAL_KEY_STORE';
}

/**
 * CreateCustomKeyStore: QKMS reaches no AWS CloudHSM cluster, so an AWS_CLOUDHSM store (the
 * default type) is CloudHsmClusterNotFoundException, as AWS answers for a cluster it cannot find;
 * an external key store is UnsupportedOperationException (an XKS proxy in front of QKMS is not
 * offered). Neither is recorded from AWS [U]: docs in README "Operations and errors".
 */
export const createCustomKeyStore: Operation<CreateCustomKeyStoreInput> = {
  schema: Joi.object({
    CustomKeyStoreName: customKeyStoreNameSchema.required(),
    CloudHsmClusterId: Joi.string().min(19).max(24),
    CustomKeyStoreType: Joi.string().valid('AWS_CLOUDHSM', 'EXTERNAL_KEY_STORE'),
  }),
  async handle(input, ctx) {
    await authorize(ctx, 'kms:CreateCustomKeyStore');
    if (input.CustomKeyStoreType === 'EXTERNAL_KEY_STORE') throw new UnsupportedOperationException('External key stores are not supported by this gateway: QKMS is the key store in front of its HSM.');
    throw new CloudHsmClusterNotFoundException(`KMS cannot find the AWS CloudHSM cluster ${input.CloudHsmClusterId ?? '(none given)'}: this gateway reaches no CloudHSM cluster.`);
  },
};
