import assert from 'node:assert/strict';
import { callerIdentity } from '../../../src/http/sts-caller-identity';

describe('STS caller identity', () => {
  it("answers AWS's forms of UserId for each kind of principal", () => {
    const cases: Array<[string, RegExp | string, string]> = [
      ['arn:aws:iam::111122223333:root', '111122223333', '111122223333'],
      ['arn:aws:iam::111122223333:user/alice', /^AIDA[A-Z2-7]{17}$/, '111122223333'],
      ['arn:aws:iam::111122223333:user/ops/alice', /^AIDA[A-Z2-7]{17}$/, '111122223333'],
      ['arn:aws:iam::111122223333:role/Deployer', /^AROA[A-Z2-7]{17}$/, '111122223333'],
      ['arn:aws:sts::444455556666:assumed-role/Deployer/ci-run-7', /^AROA[A-Z2-7]{17}:ci-run-7$/, '444455556666'],
      ['arn:aws:sts::111122223333:federated-user/bob', '111122223333:bob', '111122223333'],
      ['arn:aws-cn:iam::111122223333:user/alice', /^AIDA[A-Z2-7]{17}$/, '111122223333'],
    ];
    for (const [arn, userId, account] of cases) {
      const got = callerIdentity(arn);
      assert.equal(got.Arn, arn);
      assert.equal(got.Account, account, arn);
      if (typeof userId === 'string') assert.equal(got.UserId, userId, arn);
      else assert.match(got.UserId, userId, arn);
    }
  });

  it('derives one stable UserId per principal, different between principals, and the role part of an assumed role from its role', () => {
    const alice = callerIdentity('arn:aws:iam::111122223333:user/alice').UserId;
    assert.equal(callerIdentity('arn:aws:iam::111122223333:user/alice').UserId, alice);
    assert.notEqual(callerIdentity('arn:aws:iam::111122223333:user/alicf').UserId, alice);
    assert.notEqual(callerIdentity('arn:aws:iam::444455556666:user/alice').UserId, alice);
    const role = callerIdentity('arn:aws:iam::111122223333:role/Deployer').UserId;
    assert.equal(callerIdentity('arn:aws:sts::111122223333:assumed-role/Deployer/one').UserId, `${role}:one`);
    assert.equal(callerIdentity('arn:aws:sts::111122223333:assumed-role/Deployer/two').UserId, `${role}:two`);
  });

  it('refuses an ARN that is not an IAM or STS principal (the principal store never holds one)', () => {
    assert.throws(() => callerIdentity('arn:aws:kms:us-east-1:111122223333:key/x'));
  });
});
