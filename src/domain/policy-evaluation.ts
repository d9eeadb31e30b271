import type { Condition, PatternList, PolicyDocument, PolicyStatement } from './policy';

/** What a request asks, in the terms policies are written in. */
export interface PolicyRequest {
  action: string;
  principalArn: string;
  /** The key's ARNs in every form this gateway accepts (verenc and aws); any may match. */
  resources: string[];
  /** Condition keys (lower-cased names) -> values; multivalued keys are arrays. Own properties only count. */
  context: Record<string, string | string[]>;
}

export type Decision = 'Allow' | 'Deny' | 'NotApplicable';

/**
 * How one document answers one request. `principalMatch` says which statements apply: identity
 * policies apply to their holder (no Principal element); key policies to the principals they name.
 * Returns Deny on any matching Deny, else Allow on any matching Allow, else NotApplicable.
 */
export function evaluate(doc: PolicyDocument, request: PolicyRequest, principalMatch: (s: PolicyStatement) => boolean): Decision {
  let decision: Decision = 'NotApplicable';
  for (const s of doc.statements) {
    if (!principalMatch(s) || !matchesAny(s.actions, [request.action]) || (s.resources && !matchesAny(s.resources, request.resources))) continue;
    if (!s.conditions.every((c) => holds(c, lookup(request.context, c.key), s.effect))) continue;
    if (s.effect === 'Deny') return 'Deny';
    decision = 'Allow';
  }
  return decision;
}

/** Key policy statements naming the principal itself, or "*". */
export function namesPrincipal(principalArn: string) {
  return (s: PolicyStatement) => (s.principals ?? []).some((p) => p === '*' || p === principalArn);
}

/** Key policy statements naming the principal's account (`<id>` or `arn:aws:iam::<id>:root`): IAM decides. */
export function namesAccount(accountId: string) {
  return (s: PolicyStatement) => (s.principals ?? []).some((p) => p === accountId || p === `arn:aws:iam::${accountId}:root`);
}

function matchesAny(list: PatternList, values: readonly string[]): boolean {
  const hit = list.matchers.some((match) => values.some(match));
  return list.negated ? !hit : hit;
}

/** A key named like a member of Object.prototype (`constructor`) is absent unless the request has it. */
function lookup(context: PolicyRequest['context'], key: string): string[] {
  if (!Object.hasOwn(context, key)) return [];
  const v = context[key];
  return Array.isArray(v) ? v : [v];
}

/**
 * One condition over the request's values for its key. A key may have several values: a
 * multivalued key (kms:EncryptionContextKeys, kms:GrantOperations), or kms:EncryptionContext:<k>
 * when the context has keys that differ only in case (condition key names are case-insensitive,
 * context keys are not). The set operators say how to combine them, as IAM documents; under a plain
 * operator the combination is the cautious one for the statement's effect — a Deny applies when any
 * value meets it, an Allow only when every value does — so that no extra value can slip a request
 * past a Deny or into an Allow.
 */
function holds(c: Condition, values: readonly string[], effect: 'Allow' | 'Deny'): boolean {
  if (c.operator === 'Null') return (values.length === 0) === (c.expected[0] === 'true');
  // IAM: a missing key fails a condition unless it is …IfExists, negated, or ForAllValues (vacuous).
  if (values.length === 0) return c.ifExists || c.operator.startsWith('StringNot') || c.setOperator === 'ForAllValues:';
  const one = (v: string) => compare(c, v);
  if (c.setOperator === 'ForAllValues:') return values.every(one);
  if (c.setOperator === 'ForAnyValue:') return values.some(one);
  return effect === 'Deny' ? values.some(one) : values.every(one);
}

function compare(c: Condition, value: string): boolean {
  switch (c.operator) {
    case 'StringEquals':
    case 'Bool':
      return c.expected.includes(value);
    case 'StringNotEquals':
      return !c.expected.includes(value);
    case 'StringEqualsIgnoreCase':
      return c.expected.some((e) => e.toLowerCase() === value.toLowerCase());
    case 'StringNotEqualsIgnoreCase':
      return !c.expected.some((e) => e.toLowerCase() === value.toLowerCase());
    case 'StringLike':
      return c.like!.some((match) => match(value));
    case 'StringNotLike':
      return !c.like!.some((match) => match(value));
    default:
      return false;
  }
}
