import type { KeySpec, KeyUsage } from './key-spec';
import type { KeyState } from './key-state';

export interface KeyRecord {
  keyId: string;
  createdAt: Date;
  description: string;
  keyUsage: KeyUsage;
  keySpec: KeySpec;
  origin: 'AWS_KMS';
  state: KeyState;
  deletionDate?: Date;
  pendingWindowDays?: number;
  currentMaterialVersion: number;
  /** The key policy document as given; evaluated by the authorization issue. */
  policy?: string;
}

/** One generation of a key's material. The material itself exists only in the HSM (see materialLabels). */
export interface KeyMaterial {
  keyId: string;
  version: number;
  /** KeyMetadata.CurrentKeyMaterialId: 64 lowercase hex (kms-protocol.md §9). */
  materialId: string;
  createdAt: Date;
}

export interface Tag {
  key: string;
  value: string;
}

export interface StateChange {
  state: KeyState;
  deletionDate: Date | null;
  pendingWindowDays: number | null;
}

/**
 * Key metadata storage. Promise-based so that a networked store (PostgreSQL, for several gateway
 * replicas) can implement it as well as the embedded SQLite one.
 */
export interface KeyRepository {
  insertKey(key: KeyRecord, material: KeyMaterial, tags: Tag[]): Promise<void>;
  getKey(keyId: string): Promise<KeyRecord | undefined>;
  getMaterial(keyId: string, version: number): Promise<KeyMaterial | undefined>;
  listMaterials(): Promise<KeyMaterial[]>;
  setState(keyId: string, change: StateChange): Promise<void>;
  /** Keys in creation order after `afterPosition`; position is opaque to callers but stable. */
  listKeys(afterPosition: number, limit: number): Promise<Array<{ keyId: string; position: number }>>;
  listTags(keyId: string): Promise<Tag[]>;
  aliasTarget(aliasName: string): Promise<string | undefined>;
  /** SHA-256 of the secret part of a grant's token, or undefined for an unknown grant. */
  grantTokenHash(grantId: string): Promise<Buffer | undefined>;
  close(): Promise<void>;
}

/** The token objects that hold one material version: the AES KEK and the HMAC key of KWP blobs. */
export function materialLabels(keyId: string, version: number): { kek: string; mac: string } {
  return { kek: `qkms/${keyId}/${version}/kek`, mac: `qkms/${keyId}/${version}/mac` };
}

export const KEY_LABEL_PREFIX = 'qkms/';
export const INTERNAL_LABEL_PREFIX = 'qkms-internal/';
