import crypto from 'node:crypto';
import type { ObjectRef } from '../hsm/hsm';
import { SUPPORTED_SPECS, type KeySpec, type KeyUsage } from './key-spec';
import type { KeyState } from './key-state';

export interface KeyRecord {
  keyId: string;
  createdAt: Date;
  description: string;
  keyUsage: KeyUsage;
  keySpec: KeySpec;
  /** AWS_KMS: material generated in the HSM. EXTERNAL: imported (BYOK, domain/import-material.ts). */
  origin: KeyOrigin;
  state: KeyState;
  deletionDate?: Date;
  pendingWindowDays?: number;
  /**
   * Set when the scheduler began destroying the key (its waiting period over): from then on it
   * cannot be cancelled, and a crash resumes the deletion. The key still shows as PendingDeletion.
   */
  deletionStartedAt?: Date;
  currentMaterialVersion: number;
  /** The key policy document as given; evaluated by the authorization issue. */
  policy?: string;
  rotation?: { periodDays: number; nextRotationDate: Date };
  /**
   * Multi-Region keys (`mrk-` ids) only: the region of the primary key, the same in every region's
   * record of the key id. Undefined for single-Region keys.
   */
  primaryRegion?: string;
}

/** One generation of a key's material. The material itself exists only in the HSM, as `objects`. */
export interface KeyMaterial {
  keyId: string;
  version: number;
  /** KeyMetadata.CurrentKeyMaterialId: 64 lowercase hex (kms-protocol.md §9). */
  materialId: string;
  createdAt: Date;
  /** How this version came to be; undefined for the key's first material. */
  rotationType?: 'AUTOMATIC' | 'ON_DEMAND';
  /**
   * The version's token objects by role (materialRoles): found by their ids, never by label.
   * Empty while imported material is deleted or expired (imported.importState PENDING_IMPORT).
   */
  objects: MaterialObjects;
  /** Imported material only (Origin EXTERNAL); undefined for material generated in the HSM. */
  imported?: ImportedMaterial;
}

export type KeyOrigin = 'AWS_KMS' | 'EXTERNAL';

/**
 * The import facts of one version of an EXTERNAL key. Its materialId is derived from the material
 * (import-material.ts), so reimporting the same material is recognised. A version newer than the
 * key's current one is PENDING_ROTATION (imported with ImportType NEW_KEY_MATERIAL, made current by
 * RotateKeyOnDemand).
 */
export interface ImportedMaterial {
  /** PENDING_IMPORT: deleted (DeleteImportedKeyMaterial) or expired; its objects are gone. */
  importState: 'IMPORTED' | 'PENDING_IMPORT';
  expirationModel: ExpirationModel;
  /** Set when expirationModel is KEY_MATERIAL_EXPIRES: the scheduler deletes the material then. */
  validTo?: Date;
  /** KeyMaterialDescription, kept across reimports when a reimport gives none. */
  description?: string;
}

export type ExpirationModel = 'KEY_MATERIAL_EXPIRES' | 'KEY_MATERIAL_DOES_NOT_EXPIRE';

/**
 * One GetParametersForImport answer: an RSA wrapping key pair made on the token for one key, and
 * the hash of the import token's secret. Valid until validTo; the scheduler destroys the pair and
 * drops the record after that (and the key's deletion does too). Recorded before the pair is made,
 * so a crash leaves at most a record whose token no one was given, swept at validTo like any other.
 */
export interface ImportParameters {
  parametersId: string;
  keyId: string;
  wrappingKeySpec: 'RSA_2048' | 'RSA_3072' | 'RSA_4096';
  wrappingAlgorithm: 'RSAES_OAEP_SHA_1' | 'RSAES_OAEP_SHA_256' | 'RSA_AES_KEY_WRAP_SHA_1' | 'RSA_AES_KEY_WRAP_SHA_256';
  /** SHA-256 of the token's secret part (the token itself is never stored). */
  tokenHash: Buffer;
  /** Roles private and public. */
  objects: MaterialObjects;
  createdAt: Date;
  validTo: Date;
}

/** What an import's activation found (activateImport). */
export type ImportActivation =
  /** The material is now the version's (a first import, NEW_KEY_MATERIAL, or a reimport of deleted material). */
  | 'imported'
  /** The version's material was present already: only its expiration changed; the intent's objects are surplus (the intent is left abandoned for the caller to roll back). */
  | 'expiry-updated';

/** A material version's token objects by role: kek and mac (symmetric), hmac (HMAC_*), private and public (key pairs). */
export type MaterialObjects = Record<string, ObjectRef>;

/**
 * A material version recorded before any of its objects is made on the token (write-ahead): if the
 * gateway dies before the version is activated, start-up reconciliation destroys whatever objects
 * carry its ids and drops the intent. Never acknowledged, so never used by a ciphertext: a version
 * becomes current only when it is activated.
 */
export interface MaterialIntent {
  intentId: number;
  keyId: string;
  version: number;
  /**
   * create, rotate: generated material. import: imported material unwrapped into the objects (a
   * new version, or a reimport of the version). discard: objects of deleted or expired imported
   * material, recorded abandoned so that a crash before they are destroyed is repaired by the same
   * rollback as any other intent.
   */
  purpose: 'create' | 'rotate' | 'import' | 'discard';
  rotationType?: 'AUTOMATIC' | 'ON_DEMAND';
  objects: MaterialObjects;
  createdAt: Date;
  /**
   * The process that recorded it (ReplicaCoordination.ownerId): start-up repair leaves the intents
   * of a live replica alone. Undefined for intents recorded before owners were.
   */
  owner?: string;
}

/** Why a version could not be reserved: the key is not (or no longer) Enabled and rotatable, or its on-demand quota is used up. */
export type ReserveRefusal = 'state' | 'quota';

/** insertAlias: made, the name already taken, or the target key at its alias quota. */
export type AliasInsert = 'created' | 'taken' | 'quota';

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
 *
 * Regions (QKMS_REGIONS). Keys are regional: a repository is a view of the store from one region
 * (`region`; `inRegion` gives the view of another on the same connection). A key id has at most
 * one record per region; single-Region keys (UUID ids) have exactly one, multi-Region keys (`mrk-`
 * ids) one per region they are replicated to. What a record holds is either
 *  - regional, seen and changed only through its region's view: the record's existence, state,
 *    deletion (date, window, started), description, policy, creation date, and everything hung on
 *    the record — tags, aliases (a name is unique per region), grants, last usage; or
 *  - shared by every record of the key id, whatever the view: key spec, usage, origin, the
 *    material versions and their objects (the HSM material is one), current and last material
 *    version, automatic rotation, primaryRegion, intents and import parameters.
 * A method whose doc does not say otherwise reads and writes regional facts in its view's region
 * only, and shared facts of every record of the key id. Rows written before regions existed belong
 * to the store's home region (the region it was opened with: QKMS_REGION).
 */
export interface KeyRepository {
  /** The region this view serves. */
  readonly region: string;
  /** The same store seen from `region` (same connection, same cache): cheap, may be called per request. */
  inRegion(region: string): KeyRepository;
  /**
   * Every region holding a record of the key id, with that record's state, whatever the view
   * (a multi-Region key's primary and replicas; one entry for a single-Region key; none if unknown).
   */
  keyRegions(keyId: string): Promise<Array<{ region: string; state: KeyState }>>;
  /** Every region holding at least one key record, in order, whatever the view (start-up warns of the ones not served). */
  regionsWithKeys(): Promise<string[]>;
  /**
   * ReplicateKey: the key id's record in this view's region, with its tags, in one transaction.
   * Only the regional facts are taken from `key` (createdAt, description, policy, state); the
   * shared ones are copied from the key id's existing records in the same transaction. 'exists'
   * when this region holds a record of the key id already; 'gone' when no region holds one, or
   * every record's deletion has begun (the material may be destroyed next: a replica made then
   * would be left without it).
   */
  insertReplica(key: KeyRecord, tags: Tag[]): Promise<'created' | 'exists' | 'gone'>;
  /**
   * UpdatePrimaryRegion, compare-and-set: every record of the key id gets primaryRegion `to`, if
   * it is `from` now and `to` holds a record. False otherwise.
   */
  setPrimaryRegion(keyId: string, from: string, to: string): Promise<boolean>;
  /**
   * The scheduler, for a key whose deletion has begun in this view's region: if another region
   * still holds a record of the key id, this region's record is removed with its regional facts
   * (tags, aliases, grants, usage) and the shared ones are kept: true. False, nothing removed,
   * when this is the key's last record: the caller destroys the material, then calls deleteKey.
   * Checked and done as one step among all writers.
   */
  deleteRegionRecord(keyId: string): Promise<boolean>;
  /** Recorded as the owner of every intent this instance records (the process's ReplicaCoordination.ownerId). */
  readonly ownerId: string;
  /**
   * CreateKey, before any token object exists: the first material's object ids as an intent.
   * `objectIds` are role -> CKA_ID (hex); labels follow from the key id, version and role.
   */
  recordKeyIntent(intent: { keyId: string; objectIds: Record<string, string>; createdAt: Date }): Promise<MaterialIntent>;
  /** CreateKey, once every object exists: the key, its first material (the intent's) and its tags, and the intent dropped, in one transaction. */
  activateKey(intent: MaterialIntent, key: KeyRecord, materialId: string, tags: Tag[]): Promise<void>;
  /**
   * A rotation, before any token object exists, in one transaction: the key must be Enabled, not
   * being deleted, and (`dueBy`) due for automatic rotation or (`onDemandLimit`) under its on-demand
   * quota counting rotations in flight; then the next version number is reserved — never reused,
   * even if this rotation is rolled back — and recorded with the object ids as an intent.
   */
  reserveVersion(
    keyId: string,
    request: { rotationType: 'AUTOMATIC' | 'ON_DEMAND'; objectIds: Record<string, string>; createdAt: Date; dueBy?: Date; onDemandLimit?: number },
  ): Promise<MaterialIntent | ReserveRefusal>;
  /**
   * A rotation, once every object exists, in one transaction: the material added, made current
   * (unless a later version already is), the automatic-rotation date moved on when given (unless
   * the rotation settings changed meanwhile: Enable/DisableKeyRotation win), and the intent dropped.
   */
  activateRotation(intent: MaterialIntent, materialId: string, nextRotation?: { periodDays: number; nextRotationDate: Date }): Promise<void>;
  /** Intents left by a gateway that stopped before activating them (start-up reconciliation). */
  listIntents(): Promise<MaterialIntent[]>;
  /**
   * The first step of a rollback, before any object is destroyed: the intent can no longer be
   * activated (an activation that comes later fails and rolls back itself). It stays listed.
   * False when the intent is gone — activated (its objects are a version now) or rolled back.
   */
  abandonIntent(intentId: number): Promise<boolean>;
  /** Drops an intent whose objects are gone (rolled back). */
  deleteIntent(intentId: number): Promise<void>;
  getKey(keyId: string): Promise<KeyRecord | undefined>;
  getMaterial(keyId: string, version: number): Promise<KeyMaterial | undefined>;
  /** Every material version of every key (start-up reconciliation, orphan search). */
  listMaterials(): Promise<KeyMaterial[]>;
  /**
   * Compare-and-set: the key moves to `change` only if its state is one of `from` and its deletion
   * has not begun. False when it was not (the caller re-reads and answers from what it finds).
   */
  transitionState(keyId: string, from: readonly KeyState[], change: StateChange): Promise<boolean>;
  /**
   * The scheduler's claim on a key whose waiting period is over, before any token object is
   * destroyed: false if it is no longer PendingDeletion (cancelled) or not yet due.
   */
  beginDeletion(keyId: string, now: Date): Promise<boolean>;
  /** Keys in creation order after `afterPosition`; position is opaque to callers but stable. */
  listKeys(afterPosition: number, limit: number): Promise<Array<{ keyId: string; position: number }>>;
  listTags(keyId: string): Promise<Tag[]>;
  aliasTarget(aliasName: string): Promise<string | undefined>;
  getAlias(aliasName: string): Promise<Alias | undefined>;
  /**
   * Creates the alias unless its name is taken or its target already has `maxPerKey` aliases,
   * checked and written as one step (replicas create aliases concurrently).
   */
  insertAlias(alias: Alias, maxPerKey: number): Promise<AliasInsert>;
  /** Points the alias at another key unless that key already has `maxPerKey` others (false), as one step. */
  retargetAlias(aliasName: string, targetKeyId: string, at: Date, maxPerKey: number): Promise<boolean>;
  deleteAlias(aliasName: string): Promise<void>;
  countAliases(keyId: string): Promise<number>;
  /** Aliases in name order, optionally of one key; position is opaque but stable. */
  listAliases(afterPosition: number, limit: number, keyId?: string): Promise<Array<Alias & { position: number }>>;
  setDescription(keyId: string, description: string): Promise<void>;
  setPolicy(keyId: string, policy: string): Promise<void>;
  /** Inserts or replaces the given tags and removes `remove`, in one transaction. */
  changeTags(keyId: string, put: Tag[], remove: string[]): Promise<void>;
  /** Only while the key is Enabled and not being deleted (Enable/DisableKeyRotation); false otherwise. */
  setRotation(keyId: string, rotation: { periodDays: number; nextRotationDate: Date } | null): Promise<boolean>;
  listMaterialsOf(keyId: string): Promise<KeyMaterial[]>;
  /**
   * Keys whose deletion date has passed or whose deletion has begun, in this view's region, and
   * records in PendingReplicaDeletion that wait for nothing (no other region holds the key id, or
   * the record is no longer the primary) / whose automatic rotation is due, at `now`: of a
   * multi-Region key only the primary's region lists it.
   */
  keysDueForDeletion(now: Date): Promise<string[]>;
  keysDueForRotation(now: Date): Promise<string[]>;
  /**
   * Removes a key whose deletion has begun: this region's record with its tags, aliases, grants
   * and usage, and — it must be the key id's last record — the shared materials, intents and
   * import parameters.
   */
  deleteKey(keyId: string): Promise<void>;
  /** CreateKey with Origin EXTERNAL: the key (PendingImport, no material, currentMaterialVersion 0) and its tags. */
  insertExternalKey(key: KeyRecord, tags: Tag[]): Promise<void>;
  /**
   * ImportKeyMaterial, before any token object exists, in one transaction. `version` 'new'
   * (NEW_KEY_MATERIAL): refused ('state') once the key's deletion has begun, and ('pending', with
   * that version's materialId) while a version newer than the current one waits for rotation;
   * otherwise the next version number is reserved (never reused). A number (EXISTING_KEY_MATERIAL):
   * that version, which must exist ('state' otherwise). Either way an intent (purpose 'import') is
   * recorded with the object ids. 'busy': another import or discard of that version is under way.
   */
  reserveImport(
    keyId: string,
    request: { version: number | 'new'; objectIds: Record<string, string>; createdAt: Date },
  ): Promise<MaterialIntent | 'state' | 'busy' | { pending: string }>;
  /**
   * ImportKeyMaterial, once the objects exist and the material is checked, in one transaction: for
   * a version that is new, the material is added (current if the key had none); for a version
   * whose material is deleted, the intent's objects become its objects; either way with the
   * import facts, the intent dropped, and the key moved from PendingImport to Enabled when none of
   * its versions is PENDING_IMPORT any more (a key pending deletion stays so). For a version whose
   * material is present, only its expiration (and description, when given) change, and the intent
   * is abandoned, not dropped: 'expiry-updated', the caller destroys the objects and drops it.
   */
  activateImport(intent: MaterialIntent, imported: { materialId: string; expirationModel: ExpirationModel; validTo?: Date; description?: string }): Promise<ImportActivation>;
  /**
   * DeleteImportedKeyMaterial and expiry, in one transaction: the version's objects are moved to a
   * new abandoned intent (purpose 'discard'), the version becomes PENDING_IMPORT with no objects,
   * and the key PendingImport (unless pending deletion). The caller then rolls the intent back
   * (destroys the objects). Undefined when the version has no material to delete. `onlyIfExpiredBy`
   * (the scheduler): only if its validTo is at or before that time (a reimport may have moved it).
   */
  discardImportedMaterial(keyId: string, version: number, onlyIfExpiredBy?: Date): Promise<MaterialIntent | undefined>;
  /**
   * RotateKeyOnDemand of an EXTERNAL key, in one transaction: the key must be Enabled and not being
   * deleted ('state'), have imported material newer than its current version ('none' otherwise)
   * and be under its on-demand quota ('quota'); that version becomes current, recorded as an
   * ON_DEMAND rotation at `at`. Resolves to the version.
   */
  rotateToImportedMaterial(keyId: string, at: Date, onDemandLimit: number): Promise<number | 'state' | 'none' | 'quota'>;
  /** Imported material whose validTo is at or before `now` and which is still IMPORTED (every region: material is shared). */
  materialsDueToExpire(now: Date): Promise<Array<{ keyId: string; version: number }>>;
  /** GetParametersForImport, before the wrapping key pair is made. */
  recordImportParameters(parameters: ImportParameters): Promise<void>;
  getImportParameters(parametersId: string): Promise<ImportParameters | undefined>;
  /** Every set of parameters, or one key's (the sweep, the token survey, a key's deletion); every region (shared). */
  listImportParameters(keyId?: string): Promise<ImportParameters[]>;
  deleteImportParameters(parametersId: string): Promise<void>;
  /** SHA-256 of the secret part of each token issued for a grant (none for an unknown grant). Grants are regional: a grant of another region's key is unknown. */
  grantTokenHashes(grantId: string): Promise<Buffer[]>;
  /**
   * Records the grant with its first token, as one step among all writers: unless a grant of the
   * key with the same name satisfies `sameAs` (then the token is added to that grant: CreateGrant's
   * Name makes retries idempotent), and unless the key already has `maxPerKey` grants ('quota').
   * Resolves to the id of the grant the token belongs to.
   */
  insertGrant(grant: Grant, tokenHash: Buffer, maxPerKey: number, sameAs?: (existing: Grant) => boolean): Promise<string | 'quota'>;
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
   * Proves the store takes writes now (/ready); region-agnostic: commits one real, durable write, and throws when
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
  /**
   * GetKeyLastUsage (key-usage.ts): each key's last successful cryptographic operation; an entry
   * replaces the stored one only if it is newer, and one of a key deleted meanwhile is dropped.
   * Each entry names its region (any view records any region's).
   */
  recordKeyUsage(entries: readonly KeyLastUsage[]): Promise<void>;
  /** The key's last usage recorded, and when this store began recording usage. */
  getKeyUsage(keyId: string): Promise<{ usage?: KeyLastUsage; trackingStartedAt: Date }>;
  /** Closes the store: every view of it. */
  close(): Promise<void>;
}

/** A key's last successful cryptographic operation (GetKeyLastUsage). */
export interface KeyLastUsage {
  keyId: string;
  /** The region of the key record used (the request's region). */
  region: string;
  operation: string;
  at: Date;
  requestId: string;
}

/**
 * The roles of one material version's token objects, by the key's spec and origin: imported
 * symmetric material is the KEK alone (its blobs are AES-GCM, which needs no MAC key).
 */
export function materialRoles(keySpec: KeySpec, origin: KeyOrigin = 'AWS_KMS'): string[] {
  switch (SUPPORTED_SPECS[keySpec].material.family) {
    case 'SYMMETRIC':
      return origin === 'EXTERNAL' ? ['kek'] : ['kek', 'mac']; // the AES KEK, and the HMAC key of KWP blobs
    case 'HMAC':
      return ['hmac'];
    default:
      return ['private', 'public'];
  }
}

/** CKA_ID bytes of a new object: random, so an id never names two objects (16 bytes, 128 bits). */
const OBJECT_ID_BYTES = 16;

/** A fresh random CKA_ID, hex. */
export function newObjectId(): string {
  return crypto.randomBytes(OBJECT_ID_BYTES).toString('hex');
}

/** Fresh random object ids for a new material version, by role. */
export function newObjectIds(keySpec: KeySpec, origin: KeyOrigin = 'AWS_KMS'): Record<string, string> {
  return Object.fromEntries(materialRoles(keySpec, origin).map((role) => [role, newObjectId()]));
}

/** The label of a material object: for people and pkcs11-tool (`qkms/<key id>/<version>/<role>`), never for lookups. */
export function objectLabel(keyId: string, version: number, role: string): string {
  return `${KEY_LABEL_PREFIX}${keyId}/${version}/${role}`;
}

/** Role -> id as stored, to role -> ObjectRef. */
export function materialObjects(keyId: string, version: number, objectIds: Record<string, string>): MaterialObjects {
  return Object.fromEntries(Object.entries(objectIds).map(([role, id]) => [role, { id, label: objectLabel(keyId, version, role) }]));
}

/** Role -> ObjectRef, to role -> id as stored (the inverse of materialObjects). */
export function objectIdsOf(objects: Record<string, { id: string }>): Record<string, string> {
  return Object.fromEntries(Object.entries(objects).map(([role, ref]) => [role, ref.id]));
}

/**
 * The ids of objects made before ids were random (store schema < 5): CKA_ID was the label's
 * UTF-8 bytes. Such objects keep their ids; a duplicate of one (the bug that made ids random) is
 * ambiguous, and the lookup refuses it.
 */
export function legacyObjectIds(keyId: string, version: number, keySpec: KeySpec): Record<string, string> {
  return Object.fromEntries(materialRoles(keySpec).map((role) => [role, Buffer.from(objectLabel(keyId, version, role), 'utf8').toString('hex')]));
}

/** An internal HSM key (marker and audit MACs): one per token, its id the label's UTF-8 bytes. */
export function internalKeyRef(name: string): ObjectRef {
  const label = `${INTERNAL_LABEL_PREFIX}${name}`;
  return { id: Buffer.from(label, 'utf8').toString('hex'), label };
}

export const KEY_LABEL_PREFIX = 'qkms/';
export const INTERNAL_LABEL_PREFIX = 'qkms-internal/';
