import { SUPPORTED_SPECS, type KeySpec, type KeyUsage } from './key-spec';
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
  rotation?: { periodDays: number; nextRotationDate: Date };
}

/** One generation of a key's material. The material itself exists only in the HSM (see materialLabels). */
export interface KeyMaterial {
  keyId: string;
  version: number;
  /** KeyMetadata.CurrentKeyMaterialId: 64 lowercase hex (kms-protocol.md §9). */
  materialId: string;
  createdAt: Date;
  /** How this version came to be; undefined for the key's first material. */
  rotationType?: 'AUTOMATIC' | 'ON_DEMAND';
}

export interface Tag {
  key: string;
  value: string;
}

export interface Alias {
  aliasName: string;
  targetKeyId: string;
  createdAt: Date;
  lastUpdatedAt: Date;
}

export interface GrantConstraints {
  EncryptionContextEquals?: Record<string, string>;
  EncryptionContextSubset?: Record<string, string>;
}

export interface Grant {
  grantId: string;
  keyId: string;
  name?: string;
  granteePrincipal: string;
  retiringPrincipal?: string;
  issuingAccount: string;
  /** GrantOperation names (Decrypt, Encrypt, …). */
  operations: string[];
  constraints?: GrantConstraints;
  createdAt: Date;
}

/**
 * Where the audit trail's last committed batch ends, signed in the HSM (src/audit): kept outside
 * the trail's files, so truncating or rewriting them contradicts it.
 */
export interface AuditAnchor {
  segment: number;
  endOffset: number;
  seq: number;
  head: string;
  mac: string;
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
  /** Every material version of every key, with its key's spec (start-up reconciliation). */
  listMaterials(): Promise<Array<KeyMaterial & { keySpec: KeySpec }>>;
  setState(keyId: string, change: StateChange): Promise<void>;
  /** Keys in creation order after `afterPosition`; position is opaque to callers but stable. */
  listKeys(afterPosition: number, limit: number): Promise<Array<{ keyId: string; position: number }>>;
  listTags(keyId: string): Promise<Tag[]>;
  aliasTarget(aliasName: string): Promise<string | undefined>;
  getAlias(aliasName: string): Promise<Alias | undefined>;
  /** False when the name is taken. */
  insertAlias(alias: Alias): Promise<boolean>;
  retargetAlias(aliasName: string, targetKeyId: string, at: Date): Promise<void>;
  deleteAlias(aliasName: string): Promise<void>;
  countAliases(keyId: string): Promise<number>;
  /** Aliases in name order, optionally of one key; position is opaque but stable. */
  listAliases(afterPosition: number, limit: number, keyId?: string): Promise<Array<Alias & { position: number }>>;
  setDescription(keyId: string, description: string): Promise<void>;
  setPolicy(keyId: string, policy: string): Promise<void>;
  /** Inserts or replaces the given tags and removes `remove`, in one transaction. */
  changeTags(keyId: string, put: Tag[], remove: string[]): Promise<void>;
  setRotation(keyId: string, rotation: { periodDays: number; nextRotationDate: Date } | null): Promise<void>;
  /** Adds a material version and makes it current, atomically. */
  addMaterial(material: KeyMaterial): Promise<void>;
  listMaterialsOf(keyId: string): Promise<KeyMaterial[]>;
  /** Keys whose deletion date has passed / whose automatic rotation is due, at `now`. */
  keysDueForDeletion(now: Date): Promise<string[]>;
  keysDueForRotation(now: Date): Promise<string[]>;
  /** Removes the key with its materials, tags, aliases and grants. */
  deleteKey(keyId: string): Promise<void>;
  /** SHA-256 of the secret part of each token issued for a grant (none for an unknown grant). */
  grantTokenHashes(grantId: string): Promise<Buffer[]>;
  insertGrant(grant: Grant, tokenHash: Buffer): Promise<void>;
  addGrantToken(grantId: string, tokenHash: Buffer): Promise<void>;
  getGrant(grantId: string): Promise<Grant | undefined>;
  /** Grants matching every given filter, in creation order after `afterPosition`. */
  listGrants(
    filter: { keyId?: string; grantId?: string; granteePrincipal?: string; retiringPrincipal?: string },
    afterPosition: number,
    limit: number,
  ): Promise<Array<Grant & { position: number }>>;
  countGrants(keyId: string): Promise<number>;
  deleteGrant(grantId: string): Promise<void>;
  /**
   * Proves the store takes writes now (/ready): commits one real, durable write, and throws when
   * it cannot within `timeoutMs` (read-only, full, locked by another writer, gone).
   */
  probeWrite(timeoutMs: number): Promise<void>;
  /**
   * The audit trail's anchor; 'adopt' while none was ever set (the next gateway start may adopt the
   * trail, once); undefined when the row is gone, which only tampering does.
   */
  getAuditAnchor(): Promise<AuditAnchor | 'adopt' | undefined>;
  /** Durable when it resolves (the audit log releases responses after it). */
  setAuditAnchor(anchor: AuditAnchor): Promise<void>;
  close(): Promise<void>;
}

/** The token objects that hold one material version: the AES KEK and the HMAC key of KWP blobs. */
export function materialLabels(keyId: string, version: number): { kek: string; mac: string } {
  return { kek: `qkms/${keyId}/${version}/kek`, mac: `qkms/${keyId}/${version}/mac` };
}

/** The token objects of one material version of a key of any spec, by role. */
export function keyObjectLabels(keyId: string, version: number, keySpec: KeySpec): Record<string, string> {
  const base = `qkms/${keyId}/${version}`;
  switch (SUPPORTED_SPECS[keySpec].material.family) {
    case 'SYMMETRIC':
      return materialLabels(keyId, version);
    case 'HMAC':
      return { hmac: `${base}/hmac` };
    default:
      return { private: `${base}/private`, public: `${base}/public` };
  }
}

export const KEY_LABEL_PREFIX = 'qkms/';
export const INTERNAL_LABEL_PREFIX = 'qkms-internal/';
