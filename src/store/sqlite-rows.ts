import type { Alias, ExpirationModel, Grant, GrantConstraints, ImportedMaterial, KeyMaterial, KeyOrigin, KeyRecord, MaterialIntent } from '../domain/key-repository';
import { materialObjects } from '../domain/key-repository';

/** Rows of the SQLite store as better-sqlite3 returns them, and their domain records. Times are seconds since the epoch (REAL). */

export const toDate = (seconds: number) => new Date(seconds * 1000);
export const toSeconds = (d: Date) => d.getTime() / 1000;

export interface KeyRow {
  key_id: string;
  created_at: number;
  description: string;
  key_usage: string;
  key_spec: string;
  origin: string;
  state: string;
  deletion_date: number | null;
  pending_window_days: number | null;
  deletion_started: number | null;
  current_material_version: number;
  policy: string | null;
  rotation_period_days: number | null;
  next_rotation_date: number | null;
  primary_region: string | null;
}

export interface MaterialRow {
  key_id: string;
  version: number;
  material_id: string;
  created_at: number;
  rotation_type: 'AUTOMATIC' | 'ON_DEMAND' | null;
  object_ids: string;
  import_state: ImportedMaterial['importState'] | null;
  expiration_model: ExpirationModel | null;
  valid_to: number | null;
  material_description: string | null;
}

export function rowToMaterial(r: MaterialRow): KeyMaterial {
  return {
    keyId: r.key_id, version: r.version, materialId: r.material_id, createdAt: toDate(r.created_at),
    ...(r.rotation_type && { rotationType: r.rotation_type }),
    objects: materialObjects(r.key_id, r.version, JSON.parse(r.object_ids) as Record<string, string>),
    ...(r.import_state && {
      imported: {
        importState: r.import_state, expirationModel: r.expiration_model as ExpirationModel, // written with import_state, always
        ...(r.valid_to !== null && { validTo: toDate(r.valid_to) }),
        ...(r.material_description !== null && { description: r.material_description }),
      },
    }),
  };
}

export interface IntentRow {
  intent_id: number;
  key_id: string;
  version: number;
  purpose: MaterialIntent['purpose'];
  rotation_type: 'AUTOMATIC' | 'ON_DEMAND' | null;
  object_ids: string;
  created_at: number;
  owner: string | null;
}

export function rowToIntent(r: IntentRow): MaterialIntent {
  return {
    intentId: r.intent_id, keyId: r.key_id, version: r.version, purpose: r.purpose, createdAt: toDate(r.created_at),
    ...(r.rotation_type && { rotationType: r.rotation_type }),
    ...(r.owner !== null && { owner: r.owner }),
    objects: materialObjects(r.key_id, r.version, JSON.parse(r.object_ids) as Record<string, string>),
  };
}

export interface GrantRow {
  position: number;
  grant_id: string;
  key_id: string;
  name: string | null;
  grantee_principal: string;
  retiring_principal: string | null;
  issuing_account: string;
  operations: string;
  constraints: string | null;
  created_at: number;
}

export function rowToGrant(r: GrantRow): Grant {
  return {
    grantId: r.grant_id, keyId: r.key_id, granteePrincipal: r.grantee_principal, issuingAccount: r.issuing_account,
    operations: JSON.parse(r.operations) as string[], createdAt: toDate(r.created_at),
    ...(r.name !== null && { name: r.name }),
    ...(r.retiring_principal !== null && { retiringPrincipal: r.retiring_principal }),
    ...(r.constraints !== null && { constraints: JSON.parse(r.constraints) as GrantConstraints }),
  };
}

export interface AliasRow {
  alias_name: string;
  target_key_id: string;
  created_at: number;
  last_updated_at: number;
  position: number;
}

export function rowToAlias(r: AliasRow): Alias & { position: number } {
  return { aliasName: r.alias_name, targetKeyId: r.target_key_id, createdAt: toDate(r.created_at), lastUpdatedAt: toDate(r.last_updated_at), position: r.position };
}

export function rowToKey(r: KeyRow): KeyRecord {
  return {
    keyId: r.key_id,
    createdAt: toDate(r.created_at),
    description: r.description,
    keyUsage: r.key_usage as KeyRecord['keyUsage'],
    keySpec: r.key_spec as KeyRecord['keySpec'],
    origin: r.origin as KeyOrigin,
    state: r.state as KeyRecord['state'],
    deletionDate: r.deletion_date === null ? undefined : toDate(r.deletion_date),
    pendingWindowDays: r.pending_window_days ?? undefined,
    ...(r.deletion_started !== null && { deletionStartedAt: toDate(r.deletion_started) }),
    currentMaterialVersion: r.current_material_version,
    policy: r.policy ?? undefined,
    rotation:
      r.rotation_period_days === null || r.next_rotation_date === null
        ? undefined
        : { periodDays: r.rotation_period_days, nextRotationDate: toDate(r.next_rotation_date) },
    ...(r.primary_region !== null && { primaryRegion: r.primary_region }),
  };
}
