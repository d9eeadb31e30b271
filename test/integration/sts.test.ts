import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ListKeysCommand, KMSClient } from '@aws-sdk/client-kms';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { integration } from '../support/integration-hooks';
import { rawCall, startGateway, TEST_CREDENTIALS, type Harness } from '../support/harness';
import { registerSecret } from '../support/secrets';

// Async only: a synchronous child would block the event loop that serves the gateway under test.
const run = promisify(execFile);

const ACCOUNT = '111122223333';
const alice = { accessKeyId: 'AKIAQKMSSTSALICE001', secretAccessKey: 'sts-alice-secret-0123456789' };
const aliceAgain = { accessKeyId: 'AKIAQKMSSTSALICE002', secretAccessKey: 'sts-alice-second-0123456789' };
const robot = { accessKeyId: 'AKIAQKMSSTSROBOT001', secretAccessKey: 'sts-robot-secret-0123456789' };
const slow = { accessKeyId: 'AKIAQKMSSTSSLOW0001', secretAccessKey: 'sts-slow-secret-0123456789' };
for (const c of [alice, aliceAgain, robot, slow]) registerSecret(c.secretAccessKey);

const SDK_ENV = {
  AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
  AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
  AWS_DEFAULT_REGION: 'us-east-1',
  AWS_EC2_METADATA_DISABLED: 'true',
  AWS_MAX_ATTEMPTS: '1',
  AWS_PAGER: '',
};

/** Our one error document shape, matched whole: a Message with markup in it would not match. */
const ERROR_XML = /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<ErrorResponse xmlns="https:\/\/sts\.amazonaws\.com\/doc\/2011-06-15\/"><Error><Type>Sender<\/Type><Code>(\w+)<\/Code><Message>([^<]*)<\/Message><\/Error><RequestId>([0-9a-f-]{36})<\/RequestId><\/ErrorResponse>$/;

interface StsAnswer {
  status: number;
  contentType?: string;
  requestId?: string;
  text: string;
}

/**
 * A raw STS query request as botocore sends it (POST, form body), signed by @smithy/signature-v4
 * like the JS SDK does, for what the SDKs cannot send (bad forms, wrong scopes, tampering).
 */
async function stsCall(url: string, body: string | Buffer, options: { service?: string; region?: string; credentials?: typeof alice | false; headers?: Record<string, string>; tamper?: (r: { headers: Record<string, string>; body: Buffer }) => void } = {}): Promise<StsAnswer> {
  const u = new URL(url);
  let headers: Record<string, string> = { host: u.host, 'content-type': 'application/x-www-form-urlencoded; charset=utf-8', ...options.headers };
  const bytes = Buffer.from(body);
  if (options.credentials !== false) {
    const signer = new SignatureV4({ credentials: options.credentials ?? TEST_CREDENTIALS, region: options.region ?? 'us-east-1', service: options.service ?? 'sts', sha256: Hash.bind(null, 'sha256') });
    headers = (await signer.sign(new HttpRequest({ method: 'POST', protocol: 'http:', hostname: u.hostname, port: Number(u.port), path: '/', headers, body: bytes }))).headers;
  }
  const req = { headers, body: bytes };
  options.tamper?.(req);
  return new Promise((resolve, reject) => {
    const r = http.request(url, { method: 'POST', headers: { ...req.headers, 'content-length': String(req.body.length) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, contentType: res.headers['content-type'], requestId: res.headers['x-amzn-requestid'] as string | undefined, text: Buffer.concat(chunks).toString('utf8') }),
      );
    });
    r.on('error', reject);
    r.end(req.body);
  });
}

/** The Code and Message of an STS error document, after checking its whole shape and header. */
function stsError(answer: StsAnswer): { status: number; code: string; message: string } {
  const m = ERROR_XML.exec(answer.text);
  assert.ok(m, `not an STS error document: ${answer.text}`);
  assert.equal(answer.contentType, 'text/xml');
  assert.equal(m[3], answer.requestId, 'RequestId in the body is the x-amzn-RequestId header');
  return { status: answer.status, code: m[1], message: m[2] };
}

/** Each python with its own boto3: Debian's python3-boto3 under /usr/bin/python3, and a newer one on PATH. */
function pythonsWithBoto3(): string[] {
  const found = new Map<string, string>();
  for (const py of ['/usr/bin/python3', 'python3']) {
    const r = spawnSync(py, ['-c', 'import boto3; print(boto3.__version__)'], { encoding: 'utf8' });
    if (r.status === 0 && !found.has(r.stdout.trim())) found.set(r.stdout.trim(), py);
  }
  return [...found.values()];
}

describe('STS GetCallerIdentity', function () {
  this.timeout(60000);
  let gw: Harness;
  let dir: string;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-sts-'));
    const file = path.join(dir, 'credentials.json');
    fs.writeFileSync(file, JSON.stringify({ principals: [
      { ...alice, principalArn: `arn:aws:iam::${ACCOUNT}:user/alice` },
      { ...aliceAgain, principalArn: `arn:aws:iam::${ACCOUNT}:user/alice` },
      { ...robot, principalArn: 'arn:aws:sts::444455556666:assumed-role/Deployer/robot-session' },
      // One request per 5 s: the test's few calls cannot be refilled in between, however slow the machine.
      { ...slow, principalArn: `arn:aws:iam::${ACCOUNT}:user/slow`, rateLimitPerSecond: 0.2 },
    ] }));
    gw = await startGateway(integration().hsm, { QKMS_CREDENTIALS_FILE: file, QKMS_REGIONS: 'us-east-1,eu-west-1', QKMS_ARN_FORMAT: 'aws' });
  });
  after(async () => {
    await gw?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('boto3: the root, an IAM user (one UserId for both its keys), an assumed role, and AssumeRole as InvalidAction', async function () {
    const pythons = pythonsWithBoto3();
    if (pythons.length === 0) this.skip(); // python3-boto3 not installed: .ci/run installs it
    const script = `
import json, sys, boto3, botocore.config
from botocore.exceptions import ClientError
def sts(key, secret, region):
    return boto3.client('sts', endpoint_url=sys.argv[1], region_name=region, aws_access_key_id=key, aws_secret_access_key=secret,
                        config=botocore.config.Config(retries={'total_max_attempts': 1}))
out = [{k: v for k, v in sts(k, s, r).get_caller_identity().items() if k != 'ResponseMetadata'} for k, s, r in json.loads(sys.argv[2])]
try:
    sts(*json.loads(sys.argv[2])[0]).assume_role(RoleArn='arn:aws:iam::${ACCOUNT}:role/x', RoleSessionName='session')
    out.append('no error')
except ClientError as e:
    out.append([e.response['Error']['Code'], e.response['Error']['Message'], e.response['ResponseMetadata']['HTTPStatusCode']])
print(json.dumps(out))
`;
    const keys = [TEST_CREDENTIALS, alice, aliceAgain, robot].map((c, i) => [c.accessKeyId, c.secretAccessKey, i === 1 ? 'eu-west-1' : 'us-east-1']);
    for (const python of pythons) {
      const [root, alice1, alice2, role, refused] = JSON.parse((await run(python, ['-c', script, gw.url, JSON.stringify(keys)], { env: { ...process.env, AWS_EC2_METADATA_DISABLED: 'true' } })).stdout);
      assert.deepEqual(root, { UserId: ACCOUNT, Account: ACCOUNT, Arn: `arn:aws:iam::${ACCOUNT}:root` });
      assert.equal(alice1.Arn, `arn:aws:iam::${ACCOUNT}:user/alice`);
      assert.equal(alice1.Account, ACCOUNT);
      assert.match(alice1.UserId, /^AIDA[A-Z2-7]{17}$/);
      assert.deepEqual(alice2, alice1, 'AWS gives the user, not the key: both access keys of alice have one UserId');
      assert.equal(role.Arn, 'arn:aws:sts::444455556666:assumed-role/Deployer/robot-session');
      assert.equal(role.Account, '444455556666', "the caller's own account, as AWS answers it");
      assert.match(role.UserId, /^AROA[A-Z2-7]{17}:robot-session$/);
      assert.deepEqual(refused, ['InvalidAction', 'Could not find operation AssumeRole for version 2011-06-15', 400]);
    }
  });

  it('the AWS CLI: --endpoint-url, and AWS_ENDPOINT_URL_STS with no endpoint option', async function () {
    if (spawnSync('aws', ['--version']).error) this.skip(); // awscli not installed: .ci/run installs it
    const expected = { UserId: ACCOUNT, Account: ACCOUNT, Arn: `arn:aws:iam::${ACCOUNT}:root` };
    const byOption = JSON.parse((await run('aws', ['sts', 'get-caller-identity', '--endpoint-url', gw.url, '--output', 'json'], { env: { ...process.env, ...SDK_ENV } })).stdout);
    assert.deepEqual(byOption, expected);
    const byEnv = JSON.parse((await run('aws', ['sts', 'get-caller-identity', '--output', 'json'], { env: { ...process.env, ...SDK_ENV, AWS_ENDPOINT_URL_STS: gw.url } })).stdout);
    assert.deepEqual(byEnv, expected);
    await assert.rejects(
      run('aws', ['sts', 'get-caller-identity', '--endpoint-url', gw.url, '--region', 'ap-south-1'], { env: { ...process.env, ...SDK_ENV } }),
      (e: { stderr: string }) => /SignatureDoesNotMatch.*Credential should be scoped to a valid region, not 'ap-south-1'/.test(e.stderr),
    );
  });

  it("the JS SDK v3's STS client parses the XML errors: AssumeRole is InvalidAction, a wrong secret SignatureDoesNotMatch", async function () {
    // @aws-sdk/client-sts is not a dependency; the SDK's own nested STS client (AssumeRole only,
    // used by its credential providers) is installed with @aws-sdk/client-kms and speaks the same protocol.
    let sts: { STSClient: new (c: object) => { send(c: object): Promise<unknown>; destroy(): void }; AssumeRoleCommand: new (i: object) => object };
    try {
      sts = require('@aws-sdk/nested-clients/sts');
    } catch {
      this.skip(); // not installed with this @aws-sdk/client-kms
    }
    const call = async (credentials: typeof alice) => {
      const client = new sts.STSClient({ endpoint: gw.url, region: 'eu-west-1', credentials, maxAttempts: 1 });
      try {
        return await client.send(new sts.AssumeRoleCommand({ RoleArn: `arn:aws:iam::${ACCOUNT}:role/x`, RoleSessionName: 'session' }));
      } finally {
        client.destroy();
      }
    };
    await assert.rejects(call(TEST_CREDENTIALS), (e: Error & { $metadata: { httpStatusCode: number } }) =>
      e.name === 'InvalidAction' && e.message === 'Could not find operation AssumeRole for version 2011-06-15' && e.$metadata.httpStatusCode === 400);
    await assert.rejects(call({ ...TEST_CREDENTIALS, secretAccessKey: 'wrong-secret-0123456789' }), (e: Error & { $metadata: { httpStatusCode: number } }) =>
      e.name === 'SignatureDoesNotMatch' && e.$metadata.httpStatusCode === 403);
  });

  it('answers the XML AWS gives, with the request id in the body and the header', async () => {
    const answer = await stsCall(gw.url, 'Action=GetCallerIdentity&Version=2011-06-15');
    assert.equal(answer.status, 200);
    assert.equal(answer.contentType, 'text/xml');
    assert.equal(
      answer.text,
      '<?xml version="1.0" encoding="UTF-8"?>\n<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>' +
        `<Arn>arn:aws:iam::${ACCOUNT}:root</Arn><UserId>${ACCOUNT}</UserId><Account>${ACCOUNT}</Account></GetCallerIdentityResult>` +
        `<ResponseMetadata><RequestId>${answer.requestId}</RequestId></ResponseMetadata></GetCallerIdentityResponse>`,
    );
  });

  it('refuses bad forms with 400 InvalidAction, MissingAction or ValidationError, escaping what it echoes', async () => {
    const cases: Array<[string | Buffer, string, string]> = [
      ['Action=AssumeRole&Version=2011-06-15', 'InvalidAction', 'Could not find operation AssumeRole for version 2011-06-15'],
      ['Action=GetCallerIdentity', 'InvalidAction', 'Could not find operation GetCallerIdentity for version NO_VERSION_SPECIFIED'],
      ['Action=GetCallerIdentity&Version=2012-01-01', 'InvalidAction', 'Could not find operation GetCallerIdentity for version 2012-01-01'],
      ['Version=2011-06-15', 'MissingAction', 'The request is missing an action or a required parameter.'],
      ['', 'MissingAction', 'The request is missing an action or a required parameter.'],
      ['%ZZ&&=&==&Action', 'MissingAction', 'The request is missing an action or a required parameter.'],
      ['Action=GetCallerIdentity&Action=GetCallerIdentity&Version=2011-06-15', 'ValidationError', 'The parameter Action must be given once.'],
      ['Action=%3Cx%3E%26%22&Version=2011-06-15', 'InvalidAction', 'Could not find operation &lt;x&gt;&amp;&quot; for version 2011-06-15'],
      // A NUL and a lone surrogate cannot be carried by XML 1.0 at all: replaced, not echoed.
      ['Action=a%00b%ED%A0%80&Version=2011-06-15', 'InvalidAction', 'Could not find operation a\uFFFDb\uFFFD\uFFFD\uFFFD for version 2011-06-15'],
      [Buffer.from([0x41, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x3d, 0xff, 0xfe]), 'InvalidAction', 'Could not find operation \uFFFD\uFFFD for version NO_VERSION_SPECIFIED'],
      [`Action=${'A'.repeat(5000)}&Version=2011-06-15`, 'InvalidAction', `Could not find operation ${'A'.repeat(128)}… for version 2011-06-15`],
    ];
    for (const [body, code, message] of cases) {
      assert.deepEqual(stsError(await stsCall(gw.url, body)), { status: 400, code, message }, String(body).slice(0, 80));
    }
    // GET with the query string: no SDK sends it, and it is not served (README): a 4xx, not a crash.
    const get = await fetch(`${gw.url}/?Action=GetCallerIdentity&Version=2011-06-15`);
    assert.deepEqual([get.status, await get.json()], [400, { __type: 'UnknownOperationException', message: 'The requested operation is not supported by this service.' }]);
  });

  it('refuses a body over QKMS_MAX_BODY_BYTES with 400 ValidationError before authenticating it', async () => {
    const huge = `Action=GetCallerIdentity&Version=2011-06-15&Pad=${'x'.repeat(gw.config.maxBodyBytes)}`;
    assert.deepEqual(stsError(await stsCall(gw.url, huge)), { status: 400, code: 'ValidationError', message: 'The request body exceeds the size limit.' });
    assert.deepEqual(stsError(await stsCall(gw.url, huge, { credentials: false })).code, 'ValidationError');
  });

  it('authenticates like KMS: unsigned, unknown key, wrong secret, tampered body, wrong service or region are 4xx STS errors', async () => {
    const body = 'Action=GetCallerIdentity&Version=2011-06-15';
    const MISMATCH = 'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';
    assert.deepEqual(stsError(await stsCall(gw.url, body, { credentials: false })), { status: 403, code: 'MissingAuthenticationToken', message: 'Request is missing Authentication Token' });
    assert.deepEqual(stsError(await stsCall(gw.url, body, { credentials: { accessKeyId: 'AKIAQKMSNOBODY00001', secretAccessKey: 'whatever-0123456789' } })), { status: 403, code: 'InvalidClientTokenId', message: 'The security token included in the request is invalid.' });
    assert.deepEqual(stsError(await stsCall(gw.url, body, { credentials: { ...alice, secretAccessKey: 'not-alices-secret-012345' } })), { status: 403, code: 'SignatureDoesNotMatch', message: MISMATCH });
    // Signed for GetCallerIdentity, sent as AssumeRole: the body hash no longer matches.
    assert.deepEqual(stsError(await stsCall(gw.url, body, { tamper: (r) => (r.body = Buffer.from('Action=AssumeRole&Version=2011-06-15')) })), { status: 403, code: 'SignatureDoesNotMatch', message: MISMATCH });
    assert.deepEqual(stsError(await stsCall(gw.url, body, { service: 'kms' })), { status: 403, code: 'SignatureDoesNotMatch', message: "Credential should be scoped to correct service: 'sts'. " });
    assert.deepEqual(stsError(await stsCall(gw.url, body, { region: 'aws-global' })), {
      status: 403,
      code: 'SignatureDoesNotMatch',
      message: "Credential should be scoped to a valid region, not 'aws-global'. This gateway serves regions 'us-east-1', 'eu-west-1' (QKMS_REGIONS): set the client's region to one of them.",
    });
    const bogus = stsError(await stsCall(gw.url, body, { credentials: false, headers: { authorization: 'Bearer abc' } }));
    assert.deepEqual([bogus.status, bogus.code], [400, 'IncompleteSignature']);
    const malformed = stsError(await stsCall(gw.url, body, { tamper: (r) => (r.headers.authorization = r.headers.authorization.replace('/sts/aws4_request', '/sts/x/aws4_request')) }));
    assert.match(malformed.message, /^Credential is malformed: expected &lt;access key&gt;\/&lt;date&gt;\/&lt;region&gt;\/sts\/aws4_request\./);
  });

  it('leaves KMS as strict as before: a KMS request stays KMS whatever its Content-Type, and an sts scope is refused there', async () => {
    const form = await rawCall(gw.url, 'TrentService.ListKeys', '{}', { headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(form.status, 200, 'X-Amz-Target makes it a KMS request');
    assert.ok(Array.isArray(form.json!.Keys));
    const stsScoped = await rawCall(gw.url, 'TrentService.ListKeys', '{}', { tamper: (r) => (r.headers.authorization = r.headers.authorization.replace('/kms/aws4_request', '/sts/aws4_request')) });
    assert.deepEqual([stsScoped.status, stsScoped.json], [400, { __type: 'InvalidSignatureException', message: "Credential should be scoped to correct service: 'kms'. " }]);
  });

  it("shares a principal's rate limit with KMS: over it, STS answers Throttling and KMS ThrottlingException", async () => {
    const body = 'Action=GetCallerIdentity&Version=2011-06-15';
    assert.equal((await stsCall(gw.url, body, { credentials: slow })).status, 200);
    assert.deepEqual(stsError(await stsCall(gw.url, body, { credentials: slow })), { status: 400, code: 'Throttling', message: 'Rate exceeded' });
    const kms = new KMSClient({ endpoint: gw.url, region: 'us-east-1', credentials: { ...slow }, maxAttempts: 1 });
    await assert.rejects(kms.send(new ListKeysCommand({})), { name: 'ThrottlingException' });
    kms.destroy();
  });

  it('audits GetCallerIdentity and a refused action like any request', async () => {
    await stsCall(gw.url, 'Action=GetCallerIdentity&Version=2011-06-15', { credentials: alice });
    await stsCall(gw.url, 'Action=GetSessionToken&Version=2011-06-15', { credentials: alice });
    const records = (await gw.auditRecords()) as Array<Record<string, unknown>>;
    const served = records.filter((r) => r.operation === 'GetCallerIdentity');
    assert.ok(served.length >= 1, 'GetCallerIdentity is in the audit trail');
    if (!gw.config.storeUrl) {
      assert.ok(served.some((r) => r.principal === `arn:aws:iam::${ACCOUNT}:user/alice` && r.accessKeyId === alice.accessKeyId && r.status === 200));
      assert.ok(records.some((r) => r.errorCode === 'InvalidAction' && r.accessKeyId === alice.accessKeyId && r.status === 400), 'the refused action too');
      assert.ok(records.some((r) => r.errorCode === 'Throttling' && r.accessKeyId === slow.accessKeyId), 'and the throttled one');
    }
  });
});
