import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parsePolicy } from '../../../src/domain/policy';
import { evaluate, namesAccount, namesPrincipal, type PolicyRequest } from '../../../src/domain/policy-evaluation';
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
    ['Null: no encryption context (an empty key list) is absent', { Null: { 'kms:EncryptionContextKeys': 'false' } }, { 'kms:encryptioncontextkeys': [] }, false],
    ['Null: a context is present', { Null: { 'kms:EncryptionContextKeys': 'false' } }, { 'kms:encryptioncontextkeys': ['a'] }, true],
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
    const st = (Principal: unknown) => parsePolicy(JSON.stringify({ Statement: [{ Effect: 'Allow', Principal, Action: 'kms:*' }] }), { requirePrincipal: true }).statements[0];
    assert.ok(namesPrincipal('arn:aws:iam::111122223333:user/alice')(st({ AWS: ['arn:aws:iam::111122223333:user/bob', 'arn:aws:iam::111122223333:user/alice'] })));
    assert.ok(namesPrincipal('arn:aws:iam::111122223333:user/alice')(st('*')));
    assert.ok(namesAccount('111122223333')(st({ AWS: '111122223333' })));
    assert.ok(namesAccount('111122223333')(st({ AWS: 'arn:aws:iam::111122223333:root' })));
    assert.ok(!namesAccount('111122223333')(st({ AWS: 'arn:aws:iam::999999999999:root' })));
  });

  it('rejects documents it could not evaluate faithfully', () => {
    for (const bad of ['[]', '{"Statement":[]}', '{"Statement":[{"Effect":"Allow","Principal":"*"}]}', '{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Condition":{"DateLessThan":{"aws:CurrentTime":"x"}}}]}']) {
      assert.throws(() => parsePolicy(bad, { requirePrincipal: true }), MalformedPolicyDocumentException, bad);
    }
    assert.throws(() => parsePolicy('{"Statement":{"Effect":"Allow","Action":"kms:*"}}', { requirePrincipal: true }), MalformedPolicyDocumentException);
    assert.equal(parsePolicy('{"Statement":{"Effect":"Allow","Action":"kms:*"}}', { requirePrincipal: false }).statements.length, 1);
  });

  it('rejects, as malformed, every shape it cannot evaluate, instead of failing later on each request', () => {
    const statement = (extra: object) => JSON.stringify({ Statement: [{ Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*', ...extra }] });
    const bad = [
      '{"Statement":[null]}', '{"Statement":[5]}', '{"Statement":["x"]}', '{"Statement":null}', 'null', '5',
      statement({ Action: 5 }), statement({ Action: [{}] }), statement({ Action: null }), statement({ Resource: 5 }), statement({ Resource: [null] }),
      statement({ Action: undefined, NotAction: [true] }), statement({ Resource: undefined, NotResource: {} }),
      statement({ Principal: { AWS: 5 } }), statement({ Principal: { AWS: [null] } }), statement({ Principal: null }), statement({ Principal: 'someone' }),
      statement({ Condition: 'x' }), statement({ Condition: [] }), statement({ Condition: { StringEquals: null } }), statement({ Condition: { StringEquals: 'x' } }),
      statement({ Condition: { StringEquals: [] } }), statement({ Condition: { StringEquals: { k: { a: 1 } } } }), statement({ Condition: { StringEquals: { k: null } } }),
      statement({ Condition: { StringEquals: { k: [[]] } } }), statement({ Conditon: { StringEquals: { k: 'v' } } }), statement({ NotPrincipal: { AWS: '*' } }),
    ];
    for (const text of bad) assert.throws(() => parsePolicy(text, { requirePrincipal: true }), MalformedPolicyDocumentException, text);
  });

  it('parses any JSON to a document that evaluates, or to MalformedPolicyDocumentException; never to an error later', () => {
    const value = fc.oneof(fc.constantFrom('kms:*', '*', 'Allow', 'Deny', 'StringEquals', 'StringLike', 'ForAnyValue:StringEquals', 'Null', 'kms:EncryptionContext:a'), fc.jsonValue({ maxDepth: 2 }));
    const member = fc.constantFrom('Effect', 'Principal', 'Action', 'NotAction', 'Resource', 'NotResource', 'Condition', 'AWS', 'Sid', 'kms:EncryptionContext:a', 'StringEquals', 'Null');
    const node: fc.Arbitrary<unknown> = fc.letrec<{ n: unknown }>((tie) => ({ n: fc.oneof({ depthSize: 'small' }, value, fc.dictionary(member, tie('n'), { maxKeys: 4 }), fc.array(tie('n'), { maxLength: 3 })) })).n;
    const statement = fc.record({ Effect: fc.constantFrom('Allow', 'Deny'), Principal: node, Action: node, Resource: node, Condition: node }, { requiredKeys: ['Effect'] });
    fc.assert(fc.property(fc.array(fc.oneof(statement, node), { maxLength: 3 }), (statements) => {
      let d;
      try {
        d = parsePolicy(JSON.stringify({ Statement: statements }), { requirePrincipal: false });
      } catch (err) {
        assert.ok(err instanceof MalformedPolicyDocumentException, String(err));
        return;
      }
      for (const match of [() => true, namesPrincipal('arn:aws:iam::111122223333:user/alice'), namesAccount('111122223333')]) {
        evaluate(d, request({ 'kms:encryptioncontext:a': 'b', 'kms:encryptioncontextkeys': ['a'] }), match);
      }
    }), { numRuns: 2000 });
  });

  it('a condition key named like a member of Object.prototype is absent unless the request has it', () => {
    for (const key of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      assert.ok(allows({ Condition: { Null: { [key]: 'true' } } }), key);
      assert.ok(!allows({ Condition: { StringLike: { [key]: '*' } } }), key);
    }
  });

  describe('context keys that differ only in case (condition key names are case-insensitive, context keys are not)', () => {
    // {"classification":"secret","Classification":"public"}: kms:EncryptionContext:classification has both values.
    const both = { 'kms:encryptioncontext:classification': ['secret', 'public'] };
    const policy = (effect: 'Allow' | 'Deny', Condition: object) => parsePolicy(JSON.stringify({ Statement: [
      { Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*', Condition: { StringEquals: { 'kms:CallerAccount': '111122223333' } } },
      { Effect: effect, Principal: '*', Action: 'kms:Decrypt', Resource: '*', Condition },
    ] }), { requirePrincipal: true });
    const decide = (effect: 'Allow' | 'Deny', Condition: object, context: PolicyRequest['context']) =>
      evaluate(policy(effect, Condition), request({ ...context, 'kms:calleraccount': '111122223333' }), () => true);

    it('a Deny applies when any of the values meets it', () => {
      for (const Condition of [
        { StringEquals: { 'kms:EncryptionContext:classification': 'secret' } },
        { StringEqualsIgnoreCase: { 'kms:EncryptionContext:Classification': 'SECRET' } },
        { StringLike: { 'kms:EncryptionContext:classification': 'sec*' } },
        { StringNotEquals: { 'kms:EncryptionContext:classification': 'public' } },
        { StringNotLike: { 'kms:EncryptionContext:classification': 'pub*' } },
      ]) {
        assert.equal(decide('Deny', Condition, both), 'Deny', JSON.stringify(Condition));
        assert.equal(decide('Deny', Condition, { 'kms:encryptioncontext:classification': 'public' }), 'Allow', `only public: ${JSON.stringify(Condition)}`);
      }
    });

    it('an Allow applies only when every value meets it', () => {
      const only = (Condition: object) => parsePolicy(JSON.stringify({ Statement: [{ Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*', Condition }] }), { requirePrincipal: true });
      const allowed = (Condition: object, context: PolicyRequest['context']) => evaluate(only(Condition), request(context), () => true) === 'Allow';
      assert.ok(!allowed({ StringEquals: { 'kms:EncryptionContext:classification': 'public' } }, both));
      assert.ok(!allowed({ StringNotEquals: { 'kms:EncryptionContext:classification': 'secret' } }, both));
      assert.ok(allowed({ StringEquals: { 'kms:EncryptionContext:classification': ['public', 'secret'] } }, both));
      assert.ok(allowed({ StringEquals: { 'kms:EncryptionContext:classification': 'public' } }, { 'kms:encryptioncontext:classification': 'public' }));
    });

    it('the set operators keep their documented meaning over all the values', () => {
      assert.equal(decide('Deny', { 'ForAnyValue:StringEquals': { 'kms:EncryptionContext:classification': 'secret' } }, both), 'Deny');
      assert.equal(decide('Deny', { 'ForAllValues:StringEquals': { 'kms:EncryptionContext:classification': 'secret' } }, both), 'Allow');
    });

    it('other multivalued keys under a plain operator: a Deny on any value, an Allow on all', () => {
      assert.equal(decide('Deny', { StringEquals: { 'kms:GrantOperations': 'Decrypt' } }, { 'kms:grantoperations': ['Decrypt', 'Encrypt'] }), 'Deny');
      assert.equal(decide('Deny', { StringEquals: { 'kms:GrantOperations': 'Sign' } }, { 'kms:grantoperations': ['Decrypt', 'Encrypt'] }), 'Allow');
    });
  });

  describe('wildcards in linear time', () => {
    const elapsed = (fn: () => void) => {
      const t = process.hrtime.bigint();
      fn();
      return Number(process.hrtime.bigint() - t) / 1e6;
    };

    it('StringLike "*-*-*-*-*-prod" against 8 KiB of dashes (the backtracking RegExp took seconds at 200)', () => {
      const d = doc({ Effect: 'Deny', Condition: { StringLike: { 'kms:EncryptionContext:tenant': '*-*-*-*-*-prod' } } });
      for (const n of [200, 400, 8192]) {
        const ms = elapsed(() => assert.equal(evaluate(d, request({ 'kms:encryptioncontext:tenant': '-'.repeat(n) }), () => true), 'NotApplicable'));
        assert.ok(ms < 50, `${n} dashes took ${ms.toFixed(1)} ms`);
      }
      assert.equal(evaluate(d, request({ 'kms:encryptioncontext:tenant': `${'-'.repeat(8000)}prod` }), () => true), 'Deny');
    });
  });
});
