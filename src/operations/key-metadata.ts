import type { KeyRecord } from '../domain/key-repository';
import { algorithmsOf } from '../domain/key-spec';
import type { GatewayDeps } from './context';
import { epochSeconds } from './context';
import { keyArn } from '../domain/arn';

/** KeyMetadata as CreateKey and DescribeKey return it (kms-protocol.md §7). */
export async function keyMetadata(key: KeyRecord, deps: GatewayDeps): Promise<Record<string, unknown>> {
  const material = await deps.keys.getMaterial(key.keyId, key.currentMaterialVersion);
  return {
    AWSAccountId: deps.scope.accountId,
    KeyId: key.keyId,
    Arn: keyArn(deps.scope, key.keyId),
    CreationDate: epochSeconds(key.createdAt),
    Enabled: key.state === 'Enabled',
    Description: key.description,
    KeyUsage: key.keyUsage,
    KeyState: key.state,
    ...(key.deletionDate && { DeletionDate: epochSeconds(key.deletionDate) }),
    ...(key.pendingWindowDays && { PendingDeletionWindowInDays: key.pendingWindowDays }),
    Origin: key.origin,
    KeyManager: 'CUSTOMER',
    CustomerMasterKeySpec: key.keySpec,
    KeySpec: key.keySpec,
    ...algorithmsOf(key),
    MultiRegion: key.primaryRegion !== undefined,
    ...(key.primaryRegion !== undefined && { MultiRegionConfiguration: await multiRegionConfiguration(key, deps) }),
    // Present for symmetric keys only [O, kms-protocol.md §7].
    ...(material && key.keySpec === 'SYMMETRIC_DEFAULT' && { CurrentKeyMaterialId: material.materialId }),
    // Imported material while it is there [O: absent before the import and after its deletion].
    ...(material?.imported?.importState === 'IMPORTED' && {
      ExpirationModel: material.imported.expirationModel,
      ...(material.imported.validTo && { ValidTo: epochSeconds(material.imported.validTo) }),
    }),
  };
}

/**
 * A multi-Region key's primary and replicas as every region's record lists them: the primary
 * (this key when it is), and the replicas (this key among them when it is one), in region order.
 */
async function multiRegionConfiguration(key: KeyRecord, deps: GatewayDeps): Promise<Record<string, unknown>> {
  const at = (region: string) => ({ Arn: keyArn({ ...deps.scope, region }, key.keyId), Region: region });
  const regions = await deps.keys.keyRegions(key.keyId);
  return {
    MultiRegionKeyType: key.primaryRegion === deps.scope.region ? 'PRIMARY' : 'REPLICA',
    PrimaryKey: at(key.primaryRegion!),
    ReplicaKeys: regions.filter((r) => r.region !== key.primaryRegion).map((r) => at(r.region)),
  };
}
