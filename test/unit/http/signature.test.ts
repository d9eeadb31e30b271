import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fc from 'fast-check';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { signature, SigningKeys } from '../../../src/http/signature';

/** Header values as clients send them: spaces, tabs, runs of them, at either end too. */
const headerValue = fc.array(fc.constantFrom('a', 'Z', '0', ' ', '  ', '\t', '-', ',', ';', '=', '/', ':'), { maxLength: 24 }).map((a) => a.join(''));
const headerName = fc.array(fc.constantFrom('a', 'b', 'x', '-', '1'), { minLength: 1, maxLength: 8 }).map((a) => `x-amz-${a.join('')}`);

describe('SigV4 signature (the gateway\'s own) against @smithy/signature-v4, the signer of the AWS SDKs', () => {
  it('computes the same signature for any signed headers, values, body, secret, region and date', async () => {
    const keys = new SigningKeys();
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(headerName, headerValue, { maxKeys: 5 }),
        fc.uint8Array({ maxLength: 64 }),
        fc.string({ minLength: 1, maxLength: 40 }),
        fc.constantFrom('us-east-1', 'eu-west-1', 'ap-southeast-2'),
        fc.date({ min: new Date('2020-01-01T00:00:00Z'), max: new Date('2030-12-31T23:59:59Z'), noInvalidDate: true }),
        async (extra, body, secret, region, at) => {
          const signingDate = new Date(Math.floor(at.getTime() / 1000) * 1000);
          const amzDate = signingDate.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
          const headers: Record<string, string> = { host: 'kms.example:8080', 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'TrentService.Encrypt', 'x-amz-date': amzDate, ...extra };
          const smithy = new SignatureV4({ credentials: { accessKeyId: 'AKIAQKMSTEST0000001', secretAccessKey: secret }, region, service: 'kms', sha256: Hash.bind(null, 'sha256'), applyChecksum: false, uriEscapePath: true });
          const signed = await smithy.sign(new HttpRequest({ method: 'POST', protocol: 'http:', hostname: 'kms.example', port: 8080, path: '/', headers: { ...headers }, body: Buffer.from(body) }), { signingDate });
          const names = /SignedHeaders=([^,]+)/.exec(signed.headers.authorization)![1].split(';');
          const theirs = /Signature=([0-9a-f]{64})/.exec(signed.headers.authorization)![1];
          const ours = signature(
            { method: 'POST', path: '/', headers: names.map((n) => [n, headers[n]] as const), payloadHash: crypto.createHash('sha256').update(body).digest('hex'), amzDate },
            keys.get(secret, amzDate.slice(0, 8), region, 'kms'),
          );
          assert.equal(ours, theirs);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps one signing key per secret and scope, bounded', () => {
    const keys = new SigningKeys();
    const a = keys.get('secret', '20261202', 'us-east-1', 'kms');
    assert.equal(keys.get('secret', '20261202', 'us-east-1', 'kms'), a);
    assert.notEqual(keys.get('secret', '20261203', 'us-east-1', 'kms').key.toString('hex'), a.key.toString('hex'));
    assert.notEqual(keys.get('other', '20261202', 'us-east-1', 'kms').key.toString('hex'), a.key.toString('hex'));
    for (let i = 0; i < 2000; i++) keys.get(`s${i}`, '20261202', 'us-east-1', 'kms');
    assert.equal(a.scope, '20261202/us-east-1/kms/aws4_request');
  });
});
