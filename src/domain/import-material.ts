import crypto from 'node:crypto';
import type { ImportedFacts, ImportTarget, ImportWrappingAlgorithm, KeyPairUsage, ObjectRef } from '../hsm/hsm';
import { HsmError } from '../hsm/hsm-error';
import type { ExpirationModel, ImportParameters, KeyRecord, MaterialIntent, MaterialObjects } from './key-repository';
import { KEY_LABEL_PREFIX, newObjectId } from './key-repository';
import { destroyObjects, rollBack, type MaterialDeps } from './key-material';
import { SUPPORTED_SPECS } from './key-spec';

/**
 * Imported key material (BYOK), crash-safe the way generated material is (key-material.ts): every
 * token object is recorded in the store before the HSM makes it. docs/crypto.md "Imported key
 * material" has the states; in short:
 *   GetParametersForImport  record (ids, token hash, validTo) -> wrapping pair made -> answer.
 *     A crash leaves a record whose token no one holds; the sweep destroys it at validTo.
 *   ImportKeyMaterial  intent (ids) -> HSM unwraps into objects -> the HSM's check value gives the
 *     material id -> activation (one transaction). A crash or a refusal before activation leaves an
 *     intent, rolled back (objects destroyed) by the caller, the scheduler or the next start.
 *   DeleteImportedKeyMaterial / expiry  one transaction moves the objects into an abandoned
 *     'discard' intent and marks the version PENDING_IMPORT -> the objects are destroyed -> the
 *     intent is dropped; a crash in between is repaired by the same rollback.
 */

/** How long GetParametersForImport's public key and token stay valid [D: 24 hours]. */
export const IMPORT_PARAMETERS_VALID_MS = 24 * 3600_000;

/** At most this many unexpired parameter sets per key; a new one beyond it replaces the oldest (each holds an RSA pair on the token). */
export const MAX_IMPORT_PARAMETERS_PER_KEY = 10;

const TOKEN_MAGIC = Buffer.from('QKI1', 'ascii');
const TOKEN_ID_BYTES = 16;
const TOKEN_SECRET_BYTES = 32;

export type WrappingKeySpec = ImportParameters['wrappingKeySpec'];

/** GetParametersForImport: a wrapping key pair on the token and the token that names it. */
export async function createImportParameters(
  deps: MaterialDeps & { clock: () => Date },
  key: KeyRecord,
  request: { wrappingKeySpec: WrappingKeySpec; wrappingAlgorithm: ImportWrappingAlgorithm },
): Promise<{ importToken: Buffer; publicKey: Buffer; validTo: Date }> {
  const existing = await deps.keys.listImportParameters(key.keyId);
  for (const old of existing.slice(0, Math.max(0, existing.length - MAX_IMPORT_PARAMETERS_PER_KEY + 1))) await discardImportParameters(deps, old);
  const id = crypto.randomBytes(TOKEN_ID_BYTES);
  const secret = crypto.randomBytes(TOKEN_SECRET_BYTES);
  const parametersId = id.toString('hex');
  const now = deps.clock();
  const parameters: ImportParameters = {
    parametersId, keyId: key.keyId, ...request, tokenHash: sha256(secret), createdAt: now, validTo: new Date(now.getTime() + IMPORT_PARAMETERS_VALID_MS),
    objects: {
      private: { id: newObjectId(), label: `${KEY_LABEL_PREFIX}${key.keyId}/import/${parametersId}/private` },
      public: { id: newObjectId(), label: `${KEY_LABEL_PREFIX}${key.keyId}/import/${parametersId}/public` },
    },
  };
  await deps.keys.recordImportParameters(parameters);
  try {
    const bits = Number(request.wrappingKeySpec.slice('RSA_'.length)) as 2048 | 3072 | 4096;
    await deps.hsm.generateKeyPair({ private: parameters.objects.private, public: parameters.objects.public }, { family: 'RSA', bits }, 'UNWRAP');
    const publicKey = await deps.hsm.publicKey(parameters.objects.public);
    return { importToken: Buffer.concat([TOKEN_MAGIC, id, secret]), publicKey, validTo: parameters.validTo };
  } catch (err) {
    await discardImportParameters(deps, parameters).catch((cause: unknown) =>
      deps.logger.error('import parameters: cleanup failed; the sweep destroys them at their expiry', { keyId: key.keyId, cause: describe(cause) }),
    );
    throw err;
  }
}

/** The wrapping pair destroyed, then the record dropped (a crash in between is repeated by the sweep). */
export async function discardImportParameters(deps: MaterialDeps, parameters: ImportParameters): Promise<void> {
  await destroyObjects(deps.hsm, parameters.objects);
  await deps.keys.deleteImportParameters(parameters.parametersId);
}

/** The parameters an import token names; 'invalid' for one never issued (or forged), 'expired' past validTo. */
export async function parametersOfToken(deps: MaterialDeps, token: Buffer, now: Date): Promise<ImportParameters | 'invalid' | 'expired'> {
  if (token.length !== TOKEN_MAGIC.length + TOKEN_ID_BYTES + TOKEN_SECRET_BYTES || !token.subarray(0, TOKEN_MAGIC.length).equals(TOKEN_MAGIC)) return 'invalid';
  const id = token.subarray(TOKEN_MAGIC.length, TOKEN_MAGIC.length + TOKEN_ID_BYTES).toString('hex');
  const parameters = await deps.keys.getImportParameters(id);
  const hash = sha256(token.subarray(TOKEN_MAGIC.length + TOKEN_ID_BYTES));
  if (!parameters || !crypto.timingSafeEqual(parameters.tokenHash, hash)) return 'invalid';
  return parameters.validTo.getTime() <= now.getTime() ? 'expired' : parameters;
}

/** Why imported material was refused, for IncorrectKeyMaterialException or InvalidCiphertextException. */
export class ImportRefused extends Error {
  constructor(
    readonly reason: 'undecryptable' | 'wrong-shape' | 'not-the-same' | 'already-associated' | 'unsupported' | 'parameters-gone',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The HSM work of an import into the intent's objects, and the material id it gives; a failure or
 * a refusal rolls the intent back before it is thrown. `expected`: the version's material id
 * (reimport); `taken`: the ids of the key's other versions (new material must differ).
 */
export async function unwrapIntoIntent(
  deps: MaterialDeps,
  intent: MaterialIntent,
  request: { key: KeyRecord; parameters: ImportParameters; encrypted: Buffer; expected?: string; taken: string[] },
): Promise<string> {
  try {
    const facts = await deps.hsm.importKeyMaterial({
      wrappingKey: request.parameters.objects.private, algorithm: request.parameters.wrappingAlgorithm, encrypted: request.encrypted, target: importTarget(request.key, intent.objects),
    });
    assertFits(request.key, facts);
    const materialId = importedMaterialId(request.key.keyId, facts.check);
    if (request.expected !== undefined && materialId !== request.expected) throw new ImportRefused('not-the-same', 'The key material is not the key material previously imported into this KMS key.');
    if (request.expected === undefined && request.taken.includes(materialId)) throw new ImportRefused('already-associated', `Key material ${materialId} is already associated with this KMS key; import it with ImportType EXISTING_KEY_MATERIAL.`);
    return materialId;
  } catch (err) {
    const isStillRunning = err instanceof HsmError && err.kind === 'timeout';
    await rollBack(deps, intent, { keepIntent: isStillRunning, isOwn: true }).catch((cause: unknown) =>
      deps.logger.error('import: rollback failed; start-up reconciliation will finish it', { keyId: intent.keyId, version: intent.version, cause: describe(cause) }),
    );
    if (err instanceof HsmError && err.kind === 'integrity') throw new ImportRefused('undecryptable', '', { cause: err });
    if (err instanceof HsmError && err.kind === 'unsupported') throw new ImportRefused('unsupported', `This HSM cannot import this key material: ${err.message}.`, { cause: err });
    // The wrapping key went meanwhile (its parameters expired, or were replaced as the oldest of a
    // key's): the token names parameters that no longer exist. Later failures are never 'key' (import-ops.ts).
    if (err instanceof HsmError && err.kind === 'key') throw new ImportRefused('parameters-gone', '', { cause: err });
    throw err;
  }
}

/**
 * KeyMaterialId of imported material: derived from what the HSM computed from it (ImportedFacts
 * check) and the key id, so reimporting the same material gives the same id, as AWS assigns it
 * [D: "based on the KMS key ID and the imported key material"]. 64 hex, like a generated one.
 */
export function importedMaterialId(keyId: string, check: Buffer): string {
  return crypto.createHash('sha256').update('QKMS imported key material id v1\0').update(keyId).update('\0').update(check).digest('hex');
}

/** DeleteImportedKeyMaterial and expiry: the version's objects destroyed through a discard intent. False when there was nothing to delete. */
export async function discardImportedMaterial(deps: MaterialDeps, keyId: string, version: number, onlyIfExpiredBy?: Date): Promise<boolean> {
  const intent = await deps.keys.discardImportedMaterial(keyId, version, onlyIfExpiredBy);
  if (!intent) return false;
  await rollBack(deps, intent, { isOwn: true });
  return true;
}

/** ImportKeyMaterial's ValidTo rules [D], checked before anything else. */
export function expirationProblem(model: ExpirationModel, validTo: Date | undefined, now: Date): string | undefined {
  if (model === 'KEY_MATERIAL_EXPIRES' && !validTo) return 'A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES';
  if (model === 'KEY_MATERIAL_DOES_NOT_EXPIRE' && validTo) return 'A validTo date must not be set if the ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE';
  if (validTo && validTo.getTime() <= now.getTime()) return 'ValidTo must be a future date and time.';
  // Written so that an invalid date (ValidTo past 8.64e12 seconds, the largest a Date holds) fails it too.
  if (validTo && !(validTo.getTime() <= now.getTime() + 365 * 86_400_000)) return 'ValidTo must be at most 365 days after the request.';
  return undefined;
}

function importTarget(key: KeyRecord, objects: MaterialObjects): ImportTarget {
  const material = SUPPORTED_SPECS[key.keySpec].material;
  if (material.family === 'SYMMETRIC') return { kind: 'AES', ref: objects.kek };
  if (material.family === 'HMAC') return { kind: 'HMAC', ref: objects.hmac, hash: material.hash };
  return { kind: 'KEY_PAIR', refs: { private: objects.private as ObjectRef, public: objects.public }, spec: material, usage: key.keyUsage as KeyPairUsage };
}

/** HMAC material lengths KMS accepts, by key spec [U: AWS documents a range per spec; the HSM measures lengths in 8-byte steps]. */
const HMAC_BYTES: Record<string, { min: number; max: number }> = { HMAC_224: { min: 28, max: 64 }, HMAC_256: { min: 32, max: 64 }, HMAC_384: { min: 48, max: 128 }, HMAC_512: { min: 64, max: 128 } };

function assertFits(key: KeyRecord, facts: ImportedFacts): void {
  const material = SUPPORTED_SPECS[key.keySpec].material;
  const wrong = (what: string) => new ImportRefused('wrong-shape', `The key material does not fit key spec ${key.keySpec}: ${what}.`);
  if (material.family === 'SYMMETRIC' && facts.valueBytes !== undefined && facts.valueBytes !== 32) throw wrong('a symmetric key must be 256 bits');
  if (material.family === 'HMAC' && facts.valueBytes !== undefined) {
    const range = HMAC_BYTES[key.keySpec];
    if (facts.valueBytes < range.min || facts.valueBytes > Math.ceil(range.max / 8) * 8) throw wrong(`HMAC key material must be ${range.min}–${range.max} bytes`);
  }
  if (material.family === 'RSA' && (!facts.keyShape || !('bits' in facts.keyShape) || facts.keyShape.bits !== material.bits)) throw wrong(`an RSA private key of ${material.bits} bits is needed`);
  if (material.family === 'EC' && (!facts.keyShape || !('curve' in facts.keyShape) || facts.keyShape.curve !== material.curve)) throw wrong(`a private key on curve ${material.curve} is needed`);
  // No check value: the HSM would not use the material with the key's mechanism (its length, where that could not be measured exactly).
  if (facts.check.length === 0) throw wrong(material.family === 'SYMMETRIC' ? 'a symmetric key must be 256 bits' : 'the HSM does not take it as a key of this spec');
}

function sha256(data: Buffer): Buffer {
  return crypto.createHash('sha256').update(data).digest();
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
