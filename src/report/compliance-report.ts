import path from 'node:path';
import { verifyAuditTrail, type AuditVerification } from '../audit/audit-verify';
import { keyArn, type ArnScope } from '../domain/arn';
import type { Grant, KeyRepository, Tag } from '../domain/key-repository';
import { surveyToken } from '../domain/token-reconciliation';
import type { Hsm, KeyObjectFacts, ObjectRef } from '../hsm/hsm';

/** One token object a material version should have, as found on the token. */
export interface ObjectFinding {
  role: string;
  label: string;
  /** CKA_ID (hex): how QKMS finds the object. */
  id: string;
  /** Every object carrying the id (normally exactly one). */
  objects: KeyObjectFacts[];
  /** Why this object breaks "key material never left the HSM"; empty when it holds. */
  failures: string[];
  /** Worth an auditor's eye, but not a breach of the rule (e.g. a modifiable object). */
  warnings: string[];
}

export interface KeyReport {
  keyId: string;
  keyArn: string;
  /** The region of this record (a multi-Region key has one per region, sharing its material). */
  region: string;
  description: string;
  keySpec: string;
  keyUsage: string;
  state: string;
  origin: string;
  createdAt: string;
  deletionDate?: string;
  rotation?: { periodDays: number; nextRotationDate: string };
  tags: Tag[];
  aliases: string[];
  /** The key policy as stored; undefined = the default key policy. */
  policy?: string;
  grants: Array<Omit<Grant, 'createdAt'> & { createdAt: string }>;
  materials: Array<{ version: number; materialId: string; createdAt: string; rotationType: string; isCurrent: boolean; objects: ObjectFinding[] }>;
  verdict: { neverLeftHsm: boolean; failures: string[] };
}

export interface ComplianceReport {
  generatedAt: string;
  dataDir: string;
  token: { label: string; module: string };
  rule: string;
  audit: AuditVerification | { error: string };
  summary: { keys: number; passing: number; failing: number; isAuditIntact: boolean };
  /** Token objects under qkms/ that no key's metadata owns (labels; `qkms orphans` reviews them). */
  orphanedObjects: string[];
  keys: KeyReport[];
}

const RULE =
  'Key material never left the HSM: every object holding secret material (secret and private keys) reports CKA_SENSITIVE, CKA_ALWAYS_SENSITIVE, ' +
  'CKA_NEVER_EXTRACTABLE and CKA_LOCAL true and CKA_EXTRACTABLE false, and exactly one object carries each id (CKA_ID) the key uses.';

const iso = (d: Date) => d.toISOString();

/**
 * Everything an auditor asks about each key, read only: metadata, tags, aliases, policy and grants
 * from the store; each material version's objects with the attributes the token itself reports
 * (Hsm.inspectKeyObjects); and the audit trail's verification. No secret value is read.
 */
export async function buildComplianceReport(
  source: { keys: KeyRepository; hsm: Hsm; scope: ArnScope; regions?: readonly string[] },
  about: { dataDir: string; token: { label: string; module: string }; now: Date },
  onProgress: (message: string) => void = () => {},
): Promise<ComplianceReport> {
  const keys: KeyReport[] = [];
  for (const region of source.regions ?? [source.scope.region]) {
    const regional = { ...source, keys: source.keys.inRegion(region), scope: { ...source.scope, region } };
    const ids = await regional.keys.listKeys(0, Number.MAX_SAFE_INTEGER);
    for (const [i, { keyId }] of ids.entries()) {
      onProgress(`${region} key ${i + 1}/${ids.length}: ${keyId}`);
      const report = await keyReport(regional, keyId);
      if (!report) continue; // deleted between listing and reading (a gateway runs beside us)
      keys.push(report);
    }
  }
  const survey = await surveyToken(source.keys, source.hsm);
  onProgress('verifying the audit trail');
  const audit = await source.keys
    .getAuditAnchor()
    .then((anchor) => verifyAuditTrail(path.join(about.dataDir, 'audit'), source.hsm, anchor))
    .catch((err: unknown) => ({ error: err instanceof Error ? err.message : String(err) }));
  const passing = keys.filter((k) => k.verdict.neverLeftHsm).length;
  return {
    generatedAt: iso(about.now),
    dataDir: about.dataDir,
    token: about.token,
    rule: RULE,
    audit,
    summary: { keys: keys.length, passing, failing: keys.length - passing, isAuditIntact: 'isIntact' in audit && audit.isIntact },
    orphanedObjects: survey.orphaned.map((ref) => ref.label).sort(),
    keys,
  };
}

async function keyReport(source: { keys: KeyRepository; hsm: Hsm; scope: ArnScope }, keyId: string): Promise<KeyReport | undefined> {
  const { keys, hsm } = source;
  const key = await keys.getKey(keyId);
  if (!key) return undefined;
  const materials = [];
  for (const m of await keys.listMaterialsOf(keyId)) {
    const objects: ObjectFinding[] = [];
    for (const [role, ref] of Object.entries(m.objects)) objects.push(judge(role, ref, await hsm.inspectKeyObjects(ref)));
    materials.push({ version: m.version, materialId: m.materialId, createdAt: iso(m.createdAt), rotationType: m.rotationType ?? 'ORIGINAL', isCurrent: m.version === key.currentMaterialVersion, objects });
  }
  const failures = materials.flatMap((m) => m.objects.flatMap((o) => o.failures.map((f) => `version ${m.version} ${o.role} (${o.label}): ${f}`)));
  if (materials.length === 0) failures.push('no key material recorded');
  return {
    keyId,
    keyArn: keyArn(source.scope, keyId),
    region: source.scope.region,
    description: key.description,
    keySpec: key.keySpec,
    keyUsage: key.keyUsage,
    state: key.state,
    origin: key.origin,
    createdAt: iso(key.createdAt),
    ...(key.deletionDate && { deletionDate: iso(key.deletionDate) }),
    ...(key.rotation && { rotation: { periodDays: key.rotation.periodDays, nextRotationDate: iso(key.rotation.nextRotationDate) } }),
    tags: await keys.listTags(keyId),
    aliases: (await keys.listAliases(0, Number.MAX_SAFE_INTEGER, keyId)).map((a) => a.aliasName),
    policy: key.policy,
    grants: (await keys.listGrants({ keyId }, 0, Number.MAX_SAFE_INTEGER)).map(({ position: _p, createdAt, ...g }) => ({ ...g, createdAt: iso(createdAt) })),
    materials,
    verdict: { neverLeftHsm: failures.length === 0, failures },
  };
}

const MUST_BE = { CKA_SENSITIVE: true, CKA_ALWAYS_SENSITIVE: true, CKA_NEVER_EXTRACTABLE: true, CKA_LOCAL: true, CKA_EXTRACTABLE: false } as const;

/** The rule applied to one id's objects. Public keys hold no secret: only their presence counts. */
export function judge(role: string, ref: ObjectRef, objects: KeyObjectFacts[]): ObjectFinding {
  const failures: string[] = [];
  const warnings: string[] = [];
  if (objects.length === 0) failures.push('object missing from the token');
  if (objects.length > 1) failures.push(`${objects.length} objects carry this id: the key's material is ambiguous`);
  for (const o of objects) {
    if (o.objectClass === 'CKO_PUBLIC_KEY') continue;
    for (const [name, wanted] of Object.entries(MUST_BE)) {
      const actual = o.flags[name];
      if (actual !== wanted) failures.push(`${name} is ${actual === undefined ? 'not reported' : String(actual)} (must be ${String(wanted)})`);
    }
    if (o.flags.CKA_PRIVATE !== true) warnings.push('CKA_PRIVATE is not true: the object is visible without login');
    if (o.flags.CKA_MODIFIABLE !== false) warnings.push('CKA_MODIFIABLE is not false: its attributes can be changed');
    if (o.allowedMechanisms === null) warnings.push('no CKA_ALLOWED_MECHANISMS: any mechanism may use it');
  }
  return { role, label: ref.label, id: ref.id, objects, failures, warnings };
}
