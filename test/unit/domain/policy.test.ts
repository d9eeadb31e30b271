import assert from 'node:assert/strict';
import { evaluate, namesAccount, namesPrincipal, parsePolicy, type PolicyRequest } from '../../../src/domain/policy';
import { MalformedPolicyDocumentException } from '../../../src/errors/kms-errors';

const request = (context: PolicyRequest['context'] = {}, action = 'kms:Decrypt'): PolicyRequest => ({
  action,
  principalArn: 'arn:aws:iam::111122223333:user/alice',
  resources: ['arn:aws:kms:us-east-1:111122223333:key/k1'],
  context,
});
const doc = (statement: object) => parsePolicy(JSON.stringify({ Statement: [{ Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*', ...statement }] }), { requirePrincipal: true });
const allows = (statement: object, context: PolicyRequest['context'] = {}, action?: string) => evaluate(doc(statement), request(context, action), () => true) === 'Allow';

describe('Policy evaluation', () => {
  it('matches actions with wildcards, case-insensitively, and NotAction', () => {
    assert.ok(allows({ Action: 'kms:De*' }));
    assert.ok(allows({ Action: 'KMS:decrypt' }));
    assert.ok(!allows({ Action: 'kms:Encrypt' }));
    assert.ok(allows({ Action: undefined, NotAction: 'kms:Encrypt' }));
    assert.ok(!allows({ Action: undefined, NotAction: 'kms:D*' }));
  });

  it('matches resources and NotResource', () => {
    assert.ok(allows({ Resource: 'arn:aws:kms:us-east-1:111122223333:key/*' }));
    assert.ok(!allows({ Resource: 'arn:aws:kms:us-east-1:111122223333:key/k2' }));
    assert.ok(allows({ Resource: undefined, NotResource: 'arn:aws:kms:*:*:key/k2' }));
  });

  const cases: Array<[string, object, PolicyRequest['context'], boolean]> = [
    ['StringEquals hit', { StringEquals: { 'kms:EncryptionContext:tenant': 'acme' } }, { 'kms:encryptioncontext:tenant': 'acme' }, true],
    ['StringEquals miss', { StringEquals: { 'kms:EncryptionContext:tenant': 'acme' } }, { 'kms:encryptioncontext:tenant': 'ACME' }, false],
    ['StringEquals absent key', { StringEquals: { 'kms:EncryptionContext:tenant': 'acme' } }, {}, false],
    ['StringEqualsIfExists absent key', { StringEqualsIfExists: { 'kms:EncryptionContext:tenant': 'acme' } }, {}, true],
    ['StringEqualsIgnoreCase', { StringEqualsIgnoreCase: { 'kms:EncryptionContext:tenant': 'acme' } }, { 'kms:encryptioncontext:tenant': 'ACME' }, true],
    ['StringNotEquals absent key is true', { StringNotEquals: { 'kms:CallerAccount': '999999999999' } }, {}, true],
    ['StringLike', { StringLike: { 'aws:PrincipalArn': 'arn:aws:iam::*:user/a?ice' } }, { 'aws:principalarn': 'arn:aws:iam::111122223333:user/alice' }, true],
    ['StringNotLike', { StringNotLike: { 'aws:PrincipalArn': 'arn:aws:iam::*:user/b*' } }, { 'aws:principalarn': 'arn:aws:iam::111122223333:user/alice' }, true],
    ['ForAllValues subset', { 'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': ['a', 'b'] } }, { 'kms:encryptioncontextkeys': ['a'] }, true],
    ['ForAllValues extra key', { 'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': ['a'] } }, { 'kms:encryptioncontextkeys': ['a', 'c'] }, false],
    ['ForAllValues empty is vacuously true', { 'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': ['a'] } }, { 'kms:encryptioncontextkeys': [] }, true],
    ['ForAnyValue', { 'ForAnyValue:StringEquals': { 'kms:GrantOperations': ['Decrypt'] } }, { 'kms:grantoperations': ['Encrypt', 'Decrypt'] }, true],
    ['ForAnyValue none', { 'ForAnyValue:StringEquals': { 'kms:GrantOperations': ['Sign'] } }, { 'kms:grantoperations': ['Encrypt'] }, false],
    ['Null true', { Null: { 'kms:EncryptionContext:tenant': 'true' } }, {}, true],
    ['Null false', { Null: { 'kms:EncryptionContext:tenant': 'false' } }, {}, false],
    ['condition key names are case-insensitive', { StringEquals: { 'KMS:CALLERACCOUNT': '111122223333' } }, { 'kms:calleraccount': '111122223333' }, true],
  ];
  for (const [name, Condition, context, expected] of cases) {
    it(`condition ${name}`, () => assert.equal(allows({ Condition }, context), expected));
  }

  it('Deny wins over Allow within one document', () => {
    const d = parsePolicy(JSON.stringify({ Statement: [
      { Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*' },
      { Effect: 'Deny', Principal: '*', Action: 'kms:Decrypt', Resource: '*' },
    ] }), { requirePrincipal: true });
    assert.equal(evaluate(d, request(), () => true), 'Deny');
    assert.equal(evaluate(d, request({}, 'kms:Encrypt'), () => true), 'Allow');
  });

  it('matches principals by ARN, "*", account id and account root', () => {
    const st = (AWS: string | string[]) => ({ Effect: 'Allow' as const, Principal: { AWS }, Action: 'kms:*' });
    assert.ok(namesPrincipal('arn:aws:iam::111122223333:user/alice')(st(['arn:aws:iam::111122223333:user/bob', 'arn:aws:iam::111122223333:user/alice'])));
    assert.ok(namesPrincipal('arn:aws:iam::111122223333:user/alice')({ Effect: 'Allow', Principal: '*', Action: 'kms:*' }));
    assert.ok(namesAccount('111122223333')(st('111122223333')));
    assert.ok(namesAccount('111122223333')(st('arn:aws:iam::111122223333:root')));
    assert.ok(!namesAccount('111122223333')(st('arn:aws:iam::999999999999:root')));
  });

  it('rejects documents it could not evaluate faithfully', () => {
    for (const bad of ['[]', '{"Statement":[]}', '{"Statement":[{"Effect":"Allow","Principal":"*"}]}', '{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Condition":{"DateLessThan":{"aws:CurrentTime":"x"}}}]}']) {
      assert.throws(() => parsePolicy(bad, { requirePrincipal: true }), MalformedPolicyDocumentException, bad);
    }
    assert.throws(() => parsePolicy('{"Statement":{"Effect":"Allow","Action":"kms:*"}}', { requirePrincipal: true }), MalformedPolicyDocumentException);
    assert.equal(parsePolicy('{"Statement":{"Effect":"Allow","Action":"kms:*"}}', { requirePrincipal: false }).Statement.length, 1);
  });
});
