import { MalformedPolicyDocumentException } from '../errors/kms-errors';

/**
 * IAM-style policy documents (key policies and identity policies) and their evaluation, for the
 * parts KMS users rely on: Effect, Principal (ARN, account id or root, "*"), Action/NotAction and
 * Resource/NotResource with wildcards, and the condition operators String(Not)Equals(IgnoreCase),
 * String(Not)Like, Bool, Null, with `…IfExists` and the ForAllValues:/ForAnyValue: set operators.
 */
export interface PolicyStatement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Principal?: '*' | { AWS: string | string[] };
  Action?: string | string[];
  NotAction?: string | string[];
  Resource?: string | string[];
  NotResource?: string | string[];
  Condition?: Record<string, Record<string, string | string[] | boolean>>;
}

export interface PolicyDocument {
  Version?: string;
  Id?: string;
  Statement: PolicyStatement[];
}

/** What a request asks, in the terms policies are written in. */
export interface PolicyRequest {
  action: string;
  principalArn: string;
  /** The key's ARNs in every form this gateway accepts (verenc and aws); any may match. */
  resources: string[];
  /** Condition keys (lower-cased names) -> values; multi-valued keys are arrays. */
  context: Record<string, string | string[]>;
}

export type Decision = 'Allow' | 'Deny' | 'NotApplicable';

const OPERATORS = /^(ForAllValues:|ForAnyValue:)?(StringEquals|StringNotEquals|StringEqualsIgnoreCase|StringNotEqualsIgnoreCase|StringLike|StringNotLike|Bool|Null)(IfExists)?$/;

/** The AWS default key policy: the account (root) may do everything, which delegates to IAM. */
const defaults = new Map<string, string>();

export function defaultKeyPolicy(accountId: string): string {
  const cached = defaults.get(accountId);
  if (cached) return cached;
  const text = JSON.stringify({
    Version: '2012-10-17',
    Id: 'key-default-1',
    Statement: [{ Sid: 'Enable IAM User Permissions', Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${accountId}:root` }, Action: 'kms:*', Resource: '*' }],
  });
  defaults.set(accountId, text);
  return text;
}

/** Parses and checks a document; anything we could not evaluate faithfully is malformed. */
export function parsePolicy(text: string, options: { requirePrincipal: boolean }): PolicyDocument {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new MalformedPolicyDocumentException('The policy document is not valid JSON.');
  }
  const bad = (why: string) => new MalformedPolicyDocumentException(`The policy document is malformed: ${why}.`);
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw bad('it must be a JSON object');
  const raw = (doc as { Statement?: unknown }).Statement;
  const statements = Array.isArray(raw) ? raw : raw && typeof raw === 'object' ? [raw] : undefined;
  if (!statements || statements.length === 0) throw bad('it has no Statement');
  for (const s of statements as PolicyStatement[]) {
    if (s.Effect !== 'Allow' && s.Effect !== 'Deny') throw bad('Effect must be Allow or Deny');
    if ((s.Action === undefined) === (s.NotAction === undefined)) throw bad('each statement needs exactly one of Action and NotAction');
    if (s.Resource !== undefined && s.NotResource !== undefined) throw bad('Resource and NotResource exclude each other');
    if (options.requirePrincipal && s.Principal === undefined) throw bad('each key policy statement needs a Principal');
    if (s.Principal !== undefined && s.Principal !== '*' && (typeof s.Principal !== 'object' || !('AWS' in s.Principal))) {
      throw bad('Principal must be "*" or {"AWS": …}');
    }
    for (const op of Object.keys(s.Condition ?? {})) if (!OPERATORS.test(op)) throw bad(`condition operator ${op} is not supported`);
  }
  return { ...(doc as object), Statement: statements } as PolicyDocument;
}

/**
 * How one document answers one request. `principalMatch` says which statements apply: identity
 * policies apply to their holder (no Principal element); key policies to the principals they name.
 * Returns Deny on any matching Deny, else Allow on any matching Allow, else NotApplicable.
 */
export function evaluate(doc: PolicyDocument, request: PolicyRequest, principalMatch: (s: PolicyStatement) => boolean): Decision {
  let decision: Decision = 'NotApplicable';
  for (const s of doc.Statement) {
    if (!principalMatch(s) || !matchesAction(s, request.action) || !matchesResource(s, request.resources) || !matchesConditions(s, request.context)) continue;
    if (s.Effect === 'Deny') return 'Deny';
    decision = 'Allow';
  }
  return decision;
}

/** Key policy statements naming the principal itself, or "*". */
export function namesPrincipal(principalArn: string) {
  return (s: PolicyStatement) => principals(s).some((p) => p === '*' || p === principalArn);
}

/** Key policy statements naming the principal's account (`<id>` or `arn:aws:iam::<id>:root`): IAM decides. */
export function namesAccount(accountId: string) {
  return (s: PolicyStatement) => principals(s).some((p) => p === accountId || p === `arn:aws:iam::${accountId}:root`);
}

function principals(s: PolicyStatement): string[] {
  if (s.Principal === undefined) return [];
  if (s.Principal === '*') return ['*'];
  return list(s.Principal.AWS);
}

function matchesAction(s: PolicyStatement, action: string): boolean {
  const hit = (patterns: string | string[] | undefined) => list(patterns).some((p) => wildcard(p, action, true));
  return s.Action !== undefined ? hit(s.Action) : !hit(s.NotAction);
}

function matchesResource(s: PolicyStatement, resources: string[]): boolean {
  const hit = (patterns: string | string[] | undefined) => list(patterns).some((p) => resources.some((r) => wildcard(p, r, false)));
  if (s.NotResource !== undefined) return !hit(s.NotResource);
  return s.Resource === undefined || hit(s.Resource);
}

function matchesConditions(s: PolicyStatement, context: Record<string, string | string[]>): boolean {
  return Object.entries(s.Condition ?? {}).every(([operator, entries]) =>
    Object.entries(entries).every(([key, expected]) => condition(operator, context[key.toLowerCase()], list(expected).map(String))),
  );
}

function condition(operator: string, actual: string | string[] | undefined, expected: string[]): boolean {
  const [, setOp, base, ifExists] = OPERATORS.exec(operator)!;
  if (base === 'Null') return (actual === undefined) === (expected[0] === 'true');
  // IAM: a missing key fails a condition unless it is …IfExists, negated, or ForAllValues (vacuous).
  if (actual === undefined || (Array.isArray(actual) && actual.length === 0)) {
    return Boolean(ifExists) || base.startsWith('StringNot') || setOp === 'ForAllValues:';
  }
  const values = Array.isArray(actual) ? actual : [actual];
  const one = (v: string) => compare(base, v, expected);
  if (setOp === 'ForAllValues:') return values.every(one);
  if (setOp === 'ForAnyValue:') return values.some(one);
  return values.length > 0 && values.every(one);
}

function compare(base: string, value: string, expected: string[]): boolean {
  switch (base) {
    case 'StringEquals':
    case 'Bool':
      return expected.includes(value);
    case 'StringNotEquals':
      return !expected.includes(value);
    case 'StringEqualsIgnoreCase':
      return expected.some((e) => e.toLowerCase() === value.toLowerCase());
    case 'StringNotEqualsIgnoreCase':
      return !expected.some((e) => e.toLowerCase() === value.toLowerCase());
    case 'StringLike':
      return expected.some((e) => wildcard(e, value, false));
    case 'StringNotLike':
      return !expected.some((e) => wildcard(e, value, false));
    default:
      return false;
  }
}

/** `*` any run, `?` one character; actions compare case-insensitively (IAM rules). */
function wildcard(pattern: string, value: string, ignoreCase: boolean): boolean {
  const re = new RegExp(`^${pattern.split('').map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&'))).join('')}$`, ignoreCase ? 'is' : 's');
  return re.test(value);
}

function list<T>(v: T | T[] | undefined): T[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}
