import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { createLogger } from '../../../src/logging/logger';

describe('Logger', () => {
  it('writes JSON and redacts secret-named fields at any depth', async () => {
    const stream = new PassThrough();
    const chunks: string[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c.toString()));
    const log = createLogger({ level: 'info', stream });
    log.info('x', { Plaintext: 'AAAA', nested: { pin: '1234', SecretAccessKey: 's3cr3t', ok: 'visible' }, body: Buffer.from('raw') });
    await new Promise((r) => setImmediate(r));
    const line = JSON.parse(chunks.join(''));
    assert.equal(line.Plaintext, '[redacted]');
    assert.equal(line.nested.pin, '[redacted]');
    assert.equal(line.nested.SecretAccessKey, '[redacted]');
    assert.equal(line.nested.ok, 'visible');
    assert.equal(line.body, '[redacted]');
    assert.ok(!chunks.join('').includes('1234'));
  });
});
