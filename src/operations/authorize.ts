import { keyArn } from '../domain/arn';
import type { GrantConstraints as KeyGrantConstraints, KeyRecord } from '../domain/key-repository';
import { defaultKeyPolicy, parsePolicy, type PolicyDocument } from '../domain/policy';
import { evaluate, namesAccount, namesPrincipal, type Decision, type PolicyRequest } from '../domain/policy-evaluation';
import { AccessDeniedException } from '../errors/kms-errors';
import type { OperationContext } from './context';

/** Facts about the request that policy conditions may test. */
export interface RequestFacts {
  encryptionContext?: Record<string, string>;
  grantOperations?: string[];
}

const compiled = new Map<string, PolicyDocument>();
const COMPILED_POLICIES = 1000;

/**
 * Key policies compiled once per text (wildcards included): they change rarely and are read on
 * every request. Least recently used first out, so a flood of distinct texts cannot grow it.
 */
export function keyPolicyDocument(text: string): PolicyDocument {
  let doc = compiled.get(text);
  if (doc) {
    compiled.delete(text);
  } else {
    doc = parsePolicy(text, { requirePrincipal: true });
    if (compiled.size >= COMPILED_POLICIES) compiled.delete(compiled.keys().next().value!);
  }
  compiled.set(text, doc);
  return doc;
}

/**
 * May the request's principal do `action` on `key` (or, without a key, on the account)? As AWS
 * KMS decides it: an explicit Deny anywhere wins; otherwise the key policy must allow the principal
 * itself (or "*"), or allow its account — which delegates to IAM, so the principal's identity
 * policy must allow too (the account root needs none), or a grant on the key must name the
 * principal and the operation with constraints the request meets. Operations without a key
 * (CreateKey, ListKeys, …) need the identity policy alone.
 */
export async function authorize(ctx: OperationContext, action: string, key?: KeyRecord, facts: RequestFacts = {}): Promise<void> {
  const { principal, deps } = ctx;
  const account = /^arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):/.exec(principal.principalArn)?.[1] ?? '';
  const isOurAccount = account === deps.config.accountId;
  // Only our account's root is the administrator; another account's root is just a principal.
  const isRoot = isOurAccount && principal.principalArn === `arn:aws:iam::${account}:root`;
  const resource = key ? keyArn(deps.scope, key.keyId) : '*';
  const request: PolicyRequest = {
    action,
    principalArn: principal.principalArn,
    resources: key ? [keyArn({ ...deps.scope, format: 'verenc' }, key.keyId), keyArn({ ...deps.scope, format: 'aws' }, key.keyId)] : ['*'],
    context: conditionContext(principal.principalArn, account, facts),
  };
  const identity: Decision = isRoot ? 'Allow' : principal.policy ? evaluate(principal.policy, request, () => true) : 'NotApplicable';
  if (!key) {
    // Keyless operations act on this gateway's account: other accounts' principals cannot.
    if (identity === 'Allow' && isOurAccount) return;
    throw denied(principal.principalArn, action, resource, identity === 'Deny' ? 'with an explicit deny in an identity-based policy' : `because no identity-based policy allows the ${action} action`);
  }
  const keyPolicy = keyPolicyDocument(key.policy ?? defaultKeyPolicy(deps.config.accountId));
  const direct = evaluate(keyPolicy, request, namesPrincipal(principal.principalArn));
  const viaAccount = isOurAccount ? evaluate(keyPolicy, request, namesAccount(account)) : 'NotApplicable';
  if (direct === 'Deny' || viaAccount === 'Deny') throw denied(principal.principalArn, action, resource, 'with an explicit deny in a resource-based policy');
  if (identity === 'Deny') throw denied(principal.principalArn, action, resource, 'with an explicit deny in an identity-based policy');
  if (direct === 'Allow' || (viaAccount === 'Allow' && identity === 'Allow')) return;
  if (await isGrantedTo(ctx, key, action, facts)) return;
  // When the key policy delegates to the account, what is missing is an IAM allow.
  const missing = viaAccount === 'Allow' ? 'identity-based' : 'resource-based';
  throw denied(principal.principalArn, action, resource, `because no ${missing} policy allows the ${action} action`);
}

/**
 * A grant on the key for this principal that lists the operation, whose constraints the request's
 * encryption context meets, and — for CreateGrant through a grant — that covers every operation
 * the new grant asks for.
 */
async function isGrantedTo(ctx: OperationContext, key: KeyRecord, action: string, facts: RequestFacts): Promise<boolean> {
  const operation = action.replace(/^kms:/, '');
  const grants = await ctx.deps.keys.listGrants({ keyId: key.keyId, granteePrincipal: ctx.principal.principalArn }, 0, 100000);
  return grants.some(
    (g) =>
      g.operations.includes(operation) &&
      meetsConstraints(g.constraints, facts.encryptionContext) &&
      (facts.grantOperations ?? []).every((op) => g.operations.includes(op)),
  );
}

/**
 * Grant constraints match keys case-insensitively and values exactly (AWS API reference,
 * GrantConstraints). Where the request's context has keys that differ only in case, each of them
 * must carry the constraint's value, so an extra spelling cannot satisfy a constraint alone.
 */
function meetsConstraints(constraints: KeyGrantConstraints | undefined, context: Record<string, string> | undefined): boolean {
  if (!constraints) return true;
  if (!context) return false; // constrained grants only serve operations that carry a context
  const byKey = valuesByFoldedKey(context);
  const includes = (pairs: Record<string, string>) =>
    Object.entries(pairs).every(([k, v]) => byKey.get(k.toLowerCase())?.every((value) => value === v) ?? false);
  const { EncryptionContextEquals: equals, EncryptionContextSubset: subset } = constraints;
  if (subset && !includes(subset)) return false;
  if (equals) {
    const keys = new Set(Object.keys(equals).map((k) => k.toLowerCase()));
    if (!includes(equals) || [...byKey.keys()].some((k) => !keys.has(k))) return false;
  }
  return true;
}

/** Context keys lower-cased, each with the values of every key that folds to it. */
function valuesByFoldedKey(context: Record<string, string>): Map<string, string[]> {
  const byKey = new Map<string, string[]>();
  for (const [k, v] of Object.entries(context)) {
    const folded = k.toLowerCase();
    const values = byKey.get(folded);
    if (values) values.push(v);
    else byKey.set(folded, [v]);
  }
  return byKey;
}

/**
 * The request's condition keys. kms:EncryptionContext:<key> is looked up case-insensitively, so it
 * holds the values of every context key that differs from <key> only in case: a multivalued key,
 * which evaluate() treats cautiously (see holds() in domain/policy-evaluation.ts).
 */
function conditionContext(principalArn: string, account: string, facts: RequestFacts): Record<string, string | string[]> {
  const context: Record<string, string | string[]> = { 'aws:principalarn': principalArn, 'kms:calleraccount': account };
  if (facts.encryptionContext) {
    context['kms:encryptioncontextkeys'] = Object.keys(facts.encryptionContext);
    for (const [k, values] of valuesByFoldedKey(facts.encryptionContext)) context[`kms:encryptioncontext:${k}`] = values;
  }
  if (facts.grantOperations) context['kms:grantoperations'] = facts.grantOperations;
  return context;
}

/** AWS's wording (kms-protocol.md §2.2). */
function denied(principalArn: string, action: string, resource: string, reason: string): AccessDeniedException {
  return new AccessDeniedException(`User: ${principalArn} is not authorized to perform: ${action} on resource: ${resource} ${reason}`);
}
