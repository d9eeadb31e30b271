import { MalformedPolicyDocumentException } from '../errors/kms-errors';
import { compileWildcard, type Matcher } from './wildcard';

/**
 * IAM-style policy documents (key policies and identity policies), for the parts KMS users rely
 * on: Effect, Principal (ARN, account id or root, "*"), Action/NotAction and
 * Resource/NotResource with wildcards, and the condition operators String(Not)Equals(IgnoreCase),
 * String(Not)Like, Bool, Null, with `…IfExists` and the ForAllValues:/ForAnyValue: set operators.
 *
 * A document is checked and compiled once (wildcards included) and then evaluated per request
 * (policy-evaluation.ts); a shape we could not evaluate faithfully is
 * MalformedPolicyDocumentException when it is set, so evaluation itself cannot fail.
 */
export interface PolicyDocument {
  readonly statements: readonly PolicyStatement[];
}

export interface PolicyStatement {
  readonly effect: 'Allow' | 'Deny';
  /** The Principal element's AWS principals ("*" for any); undefined without a Principal element. */
  readonly principals?: readonly string[];
  readonly actions: PatternList;
  readonly resources?: PatternList;
  readonly conditions: readonly Condition[];
}

export interface PatternList {
  readonly matchers: readonly Matcher[];
  /** NotAction / NotResource. */
  readonly negated: boolean;
}

export interface Condition {
  readonly setOperator?: 'ForAllValues:' | 'ForAnyValue:';
  readonly operator: string;
  readonly ifExists: boolean;
  /** The condition key, lower-cased: IAM condition key names are case-insensitive. */
  readonly key: string;
  readonly expected: readonly string[];
  readonly like?: readonly Matcher[];
}

const OPERATORS = /^(ForAllValues:|ForAnyValue:)?(StringEquals|StringNotEquals|StringEqualsIgnoreCase|StringNotEqualsIgnoreCase|StringLike|StringNotLike|Bool|Null)(IfExists)?$/;
const STATEMENT_MEMBERS = new Set(['Sid', 'Effect', 'Principal', 'Action', 'NotAction', 'Resource', 'NotResource', 'Condition']);

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

/** Parses, checks and compiles a document; anything we could not evaluate faithfully is malformed. */
export function parsePolicy(text: string, options: { requirePrincipal: boolean }): PolicyDocument {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new MalformedPolicyDocumentException('The policy document is not valid JSON.');
  }
  if (!isObject(doc)) throw malformed('it must be a JSON object');
  const raw = doc.Statement;
  const statements = Array.isArray(raw) ? raw : isObject(raw) ? [raw] : undefined;
  if (!statements || statements.length === 0) throw malformed('it has no Statement');
  return { statements: statements.map((s) => compileStatement(s, options)) };
}

function compileStatement(s: unknown, options: { requirePrincipal: boolean }): PolicyStatement {
  if (!isObject(s)) throw malformed('each statement must be a JSON object');
  const unknown = Object.keys(s).find((k) => !STATEMENT_MEMBERS.has(k));
  if (unknown !== undefined) throw malformed(`statement element ${JSON.stringify(unknown)} is not supported`);
  if (s.Effect !== 'Allow' && s.Effect !== 'Deny') throw malformed('Effect must be Allow or Deny');
  if ((s.Action === undefined) === (s.NotAction === undefined)) throw malformed('each statement needs exactly one of Action and NotAction');
  if (s.Resource !== undefined && s.NotResource !== undefined) throw malformed('Resource and NotResource exclude each other');
  if (options.requirePrincipal && s.Principal === undefined) throw malformed('each key policy statement needs a Principal');
  return {
    effect: s.Effect,
    principals: s.Principal === undefined ? undefined : principalsOf(s.Principal),
    actions: patterns(s.Action ?? s.NotAction, s.Action === undefined, 'Action', true),
    resources: s.Resource === undefined && s.NotResource === undefined ? undefined : patterns(s.Resource ?? s.NotResource, s.Resource === undefined, 'Resource', false),
    conditions: s.Condition === undefined ? [] : conditionsOf(s.Condition),
  };
}

function principalsOf(principal: unknown): string[] {
  if (principal === '*') return ['*'];
  if (!isObject(principal) || !('AWS' in principal)) throw malformed('Principal must be "*" or {"AWS": …}');
  return strings(principal.AWS, 'Principal');
}

/** Actions compare case-insensitively, resources exactly (IAM). */
function patterns(value: unknown, negated: boolean, element: string, ignoreCase: boolean): PatternList {
  return { negated, matchers: strings(value, element).map((p) => compileWildcard(p, { ignoreCase })) };
}

function conditionsOf(block: unknown): Condition[] {
  if (!isObject(block)) throw malformed('Condition must be a JSON object');
  return Object.entries(block).flatMap(([operatorName, entries]) => {
    const m = OPERATORS.exec(operatorName);
    if (!m) throw malformed(`condition operator ${operatorName} is not supported`);
    if (!isObject(entries)) throw malformed(`condition operator ${operatorName} needs a JSON object of condition keys`);
    const [, setOperator, operator, ifExists] = m;
    return Object.entries(entries).map(([key, value]): Condition => {
      const expected = conditionValues(value, operatorName);
      const isLike = operator === 'StringLike' || operator === 'StringNotLike';
      return {
        setOperator: setOperator as Condition['setOperator'],
        operator,
        ifExists: Boolean(ifExists),
        key: key.toLowerCase(),
        expected,
        like: isLike ? expected.map((p) => compileWildcard(p)) : undefined,
      };
    });
  });
}

/** A condition value is a string, number or boolean, or a list of them (IAM compares their text). */
function conditionValues(value: unknown, operatorName: string): string[] {
  const list = Array.isArray(value) ? value : [value];
  if (!list.every((v) => typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')) {
    throw malformed(`the values of ${operatorName} must be strings, numbers or booleans`);
  }
  return list.map(String);
}

function strings(value: unknown, element: string): string[] {
  const list = Array.isArray(value) ? value : [value];
  if (!list.every((v) => typeof v === 'string')) throw malformed(`${element} must be a string or a list of strings`);
  return list as string[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function malformed(why: string): MalformedPolicyDocumentException {
  return new MalformedPolicyDocumentException(`The policy document is malformed: ${why}.`);
}
