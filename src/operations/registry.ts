import type { Operation } from './context';
import { cancelKeyDeletion } from './cancel-key-deletion';
import { createAlias } from './create-alias';
import { createGrant } from './create-grant';
import { listGrants } from './list-grants';
import { listRetirableGrants } from './list-retirable-grants';
import { retireGrant } from './retire-grant';
import { revokeGrant } from './revoke-grant';
import { deleteAlias } from './delete-alias';
import { getKeyPolicy } from './get-key-policy';
import { listKeyPolicies } from './list-key-policies';
import { putKeyPolicy } from './put-key-policy';
import { disableKeyRotation } from './disable-key-rotation';
import { enableKeyRotation } from './enable-key-rotation';
import { getKeyRotationStatus } from './get-key-rotation-status';
import { listKeyRotations } from './list-key-rotations';
import { rotateKeyOnDemand } from './rotate-key-on-demand';
import { listAliases } from './list-aliases';
import { listResourceTags } from './list-resource-tags';
import { tagResource } from './tag-resource';
import { untagResource } from './untag-resource';
import { updateAlias } from './update-alias';
import { updateKeyDescription } from './update-key-description';
import { createKey } from './create-key';
import { decrypt } from './decrypt';
import { describeKey } from './describe-key';
import { encrypt } from './encrypt';
import { generateDataKey } from './generate-data-key';
import { generateDataKeyWithoutPlaintext } from './generate-data-key-without-plaintext';
import { generateRandom } from './generate-random';
import { reEncrypt } from './re-encrypt';
import { listKeys } from './list-keys';
import { scheduleKeyDeletion } from './schedule-key-deletion';
import { disableKey } from './disable-key';
import { enableKey } from './enable-key';
import { generateMac } from './generate-mac';
import { verifyMac } from './verify-mac';
import { generateDataKeyPair } from './generate-data-key-pair';
import { generateDataKeyPairWithoutPlaintext } from './generate-data-key-pair-without-plaintext';
import { getPublicKey } from './get-public-key';
import { sign } from './sign';
import { verify } from './verify';
import { deriveSharedSecret } from './derive-shared-secret';
import { connectCustomKeyStore } from './connect-custom-key-store';
import { getKeyLastUsage } from './get-key-last-usage';
import { replicateKey } from './replicate-key';
import { updatePrimaryRegion } from './update-primary-region';
import { createCustomKeyStore } from './create-custom-key-store';
import { deleteCustomKeyStore } from './delete-custom-key-store';
import { describeCustomKeyStores } from './describe-custom-key-stores';
import { disconnectCustomKeyStore } from './disconnect-custom-key-store';
import { updateCustomKeyStore } from './update-custom-key-store';
import { deleteImportedKeyMaterial } from './delete-imported-key-material';
import { getParametersForImport } from './get-parameters-for-import';
import { importKeyMaterial } from './import-key-material';

/** Every operation the gateway answers, by its exact API name (X-Amz-Target: TrentService.<name>). */
export const registry: ReadonlyMap<string, Operation> = new Map<string, Operation>([
  ['CancelKeyDeletion', cancelKeyDeletion],
  ['ConnectCustomKeyStore', connectCustomKeyStore],
  ['CreateAlias', createAlias],
  ['CreateCustomKeyStore', createCustomKeyStore],
  ['CreateGrant', createGrant],
  ['CreateKey', createKey],
  ['Decrypt', decrypt],
  ['DeleteAlias', deleteAlias],
  ['DeleteCustomKeyStore', deleteCustomKeyStore],
  ['DeleteImportedKeyMaterial', deleteImportedKeyMaterial],
  ['DeriveSharedSecret', deriveSharedSecret],
  ['DescribeCustomKeyStores', describeCustomKeyStores],
  ['DescribeKey', describeKey],
  ['DisableKey', disableKey],
  ['DisableKeyRotation', disableKeyRotation],
  ['DisconnectCustomKeyStore', disconnectCustomKeyStore],
  ['EnableKey', enableKey],
  ['EnableKeyRotation', enableKeyRotation],
  ['Encrypt', encrypt],
  ['GenerateDataKey', generateDataKey],
  ['GenerateDataKeyPair', generateDataKeyPair],
  ['GenerateDataKeyPairWithoutPlaintext', generateDataKeyPairWithoutPlaintext],
  ['GenerateDataKeyWithoutPlaintext', generateDataKeyWithoutPlaintext],
  ['GenerateMac', generateMac],
  ['GenerateRandom', generateRandom],
  ['GetKeyLastUsage', getKeyLastUsage],
  ['GetKeyPolicy', getKeyPolicy],
  ['GetKeyRotationStatus', getKeyRotationStatus],
  ['GetParametersForImport', getParametersForImport],
  ['GetPublicKey', getPublicKey],
  ['ImportKeyMaterial', importKeyMaterial],
  ['ListAliases', listAliases],
  ['ListGrants', listGrants],
  ['ListKeyPolicies', listKeyPolicies],
  ['ListKeyRotations', listKeyRotations],
  ['ListKeys', listKeys],
  ['ListResourceTags', listResourceTags],
  ['ListRetirableGrants', listRetirableGrants],
  ['PutKeyPolicy', putKeyPolicy],
  ['ReEncrypt', reEncrypt],
  ['ReplicateKey', replicateKey],
  ['RetireGrant', retireGrant],
  ['RevokeGrant', revokeGrant],
  ['RotateKeyOnDemand', rotateKeyOnDemand],
  ['ScheduleKeyDeletion', scheduleKeyDeletion],
  ['Sign', sign],
  ['TagResource', tagResource],
  ['UntagResource', untagResource],
  ['UpdateAlias', updateAlias],
  ['UpdateCustomKeyStore', updateCustomKeyStore],
  ['UpdateKeyDescription', updateKeyDescription],
  ['UpdatePrimaryRegion', updatePrimaryRegion],
  ['Verify', verify],
  ['VerifyMac', verifyMac],
]);
