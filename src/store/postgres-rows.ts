import type { Alias, Grant, GrantConstraints, KeyMaterial, KeyRecord, MaterialIntent } from '../domain/key-repository';
import { materialObjects } from '../domain/key-repository';

/**
 * Rows of the PostgreSQL store as the pg driver returns them (timestamptz as Date, json parsed,
 * bytea as Buffer, bigint as a decimal string), and their domain records.
 */
export interface KeyRow {
  key_id: string;
  created_at: Date;
  description: string;
  key_usage: string;
  key_spec: string;
  state: string;
  deletion_date: Date | null;
  pending_window_days: number | null;
  deletion_started: Date | null;
  current_material_version: number;
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
    origin: 'AWS_KMS',
    state: r.state as KeyRecord['state'],
    deletionDate: r.deletion_date ?? undefined,
    pendingWindowDays: r.pending_window_days ?? undefined,
    ...(r.deletion_started !== null && { deletionStartedAt: r.deletion_started }),
    currentMaterialVersion: r.current_material_version,
    policy: r.policy ?? undefined,
    rotation: r.rotation_period_days === null || r.next_rotation_date === null ? undefined : { periodDays: r.rotation_period_days, nextRotationDate: r.next_rotation_date },
  };
}

export interface MaterialRow {
  key_id: string;
  version: number;
  material_id: string;
  created_at: Date;
  rotation_type: 'AUTOMATIC' | 'ON_DEMAND' | null;
  object_ids: Record<string, string>;
}

export function rowToMaterial(r: MaterialRow): KeyMaterial {
  return {
    keyId: r.key_id, version: r.version, materialId: r.material_id, createdAt: r.created_at,
    ...(r.rotation_type && { rotationType: r.rotation_type }),
    objects: materialObjects(r.key_id, r.version, r.object_ids),
  };
}

export interface IntentRow {
  intent_id: string;
  key_id: string;
  version: number;
  purpose: 'create' | 'rotate';
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
