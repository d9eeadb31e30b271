import type { Alias, ExpirationModel, Grant, GrantConstraints, ImportParameters, ImportedMaterial, KeyMaterial, KeyOrigin, KeyRecord, MaterialIntent, MaterialObjects } from '../domain/key-repository';
import { materialObjects } from '../domain/key-repository';

/**
 * Rows of the PostgreSQL store as the pg driver returns them (timestamptz as Date, json parsed,
 * bytea as Buffer, bigint as a decimal string), and their domain records.
 */
export interface KeyRow {
  key_id: string;
  region: string;
  primary_region: string | null;
  created_at: Date;
  description: string;
  key_usage: string;
  key_spec: string;
  origin: string;
  state: string;
  deletion_date: Date | null;
  pending_window_days: number | null;
  deletion_started: Date | null;
  current_material_version: number;
  last_version: number;
  policy: string | null;
  rotation_period_days: number | null;
  next_rotation_date: Date | null;
}

export function rowToKey(r: KeyRow): KeyRecord {
  return {
    keyId: r.key_id,
    createdAt: r.created_at,
    description: r.description,
    keyUsage: r.key_usage as KeyRecord['keyUsage'],
    keySpec: r.key_spec as KeyRecord['keySpec'],
    origin: r.origin as KeyOrigin,
    state: r.state as KeyRecord['state'],
    deletionDate: r.deletion_date ?? undefined,
    pendingWindowDays: r.pending_window_days ?? undefined,
    ...(r.deletion_started !== null && { deletionStartedAt: r.deletion_started }),
    currentMaterialVersion: r.current_material_version,
    policy: r.policy ?? undefined,
    rotation: r.rotation_period_days === null || r.next_rotation_date === null ? undefined : { periodDays: r.rotation_period_days, nextRotationDate: r.next_rotation_date },
    ...(r.primary_region !== null && { primaryRegion: r.primary_region }),
  };
}

export interface MaterialRow {
  key_id: string;
  version: number;
  material_id: string;
  created_at: Date;
  rotation_type: 'AUTOMATIC' | 'ON_DEMAND' | null;
  object_ids: Record<string, string>;
  import_state: ImportedMaterial['importState'] | null;
  expiration_model: ExpirationModel | null;
  valid_to: Date | null;
  material_description: string | null;
}

export function rowToMaterial(r: MaterialRow): KeyMaterial {
  return {
    keyId: r.key_id, version: r.version, materialId: r.material_id, createdAt: r.created_at,
    ...(r.rotation_type && { rotationType: r.rotation_type }),
    objects: materialObjects(r.key_id, r.version, r.object_ids),
    ...(r.import_state && {
      imported: {
        importState: r.import_state, expirationModel: r.expiration_model as ExpirationModel, // written with import_state, always
        ...(r.valid_to !== null && { validTo: r.valid_to }),
        ...(r.material_description !== null && { description: r.material_description }),
      },
    }),
  };
}

export interface IntentRow {
  intent_id: string;
  key_id: string;
  version: number;
  purpose: MaterialIntent['purpose'];
  rotation_type: 'AUTOMATIC' | 'ON_DEMAND' | null;
  object_ids: Record<string, string>;
  created_at: Date;
  owner: string | null;
}

export function rowToIntent(r: IntentRow): MaterialIntent {
  return {
    intentId: Number(r.intent_id), keyId: r.key_id, version: r.version, purpose: r.purpose, createdAt: r.created_at,
    ...(r.rotation_type && { rotationType: r.rotation_type }),
    ...(r.owner !== null && { owner: r.owner }),
    objects: materialObjects(r.key_id, r.version, r.object_ids),
  };
}

export interface AliasRow {
  position: string;
  alias_name: string;
  target_key_id: string;
  created_at: Date;
  last_updated_at: Date;
}

export function rowToAlias(r: AliasRow): Alias & { position: number } {
  return { aliasName: r.alias_name, targetKeyId: r.target_key_id, createdAt: r.created_at, lastUpdatedAt: r.last_updated_at, position: Number(r.position) };
}

export interface GrantRow {
  position: string;
  grant_id: string;
  key_id: string;
  name: string | null;
  grantee_principal: string;
  retiring_principal: string | null;
  issuing_account: string;
  operations: string[];
  constraints: GrantConstraints | null;
  created_at: Date;
}

export function rowToGrant(r: GrantRow): Grant {
  return {
    grantId: r.grant_id, keyId: r.key_id, granteePrincipal: r.grantee_principal, issuingAccount: r.issuing_account,
    operations: r.operations, createdAt: r.created_at,
    ...(r.name !== null && { name: r.name }),
    ...(r.retiring_principal !== null && { retiringPrincipal: r.retiring_principal }),
    ...(r.constraints !== null && { constraints: r.constraints }),
  };
}

export interface ImportParametersRow {
  parameters_id: string;
  key_id: string;
  wrapping_key_spec: ImportParameters['wrappingKeySpec'];
  wrapping_algorithm: ImportParameters['wrappingAlgorithm'];
  token_hash: Buffer;
  objects: MaterialObjects;
  created_at: Date;
  valid_to: Date;
}

export function rowToImportParameters(r: ImportParametersRow): ImportParameters {
  return {
    parametersId: r.parameters_id, keyId: r.key_id, wrappingKeySpec: r.wrapping_key_spec, wrappingAlgorithm: r.wrapping_algorithm, tokenHash: r.token_hash,
    objects: r.objects, createdAt: r.created_at, validTo: r.valid_to,
  };
}
