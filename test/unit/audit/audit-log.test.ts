import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { AuditLog } from '../../../src/audit/audit-log';
import { AUDIT_MAC_LABEL } from '../../../src/audit/audit-record';
import { verifyAuditTrail } from '../../../src/audit/audit-verify';
import { createLogger } from '../../../src/logging/logger';
import { FakeHsm } from '../../support/fake-hsm';

const OPTIONS = { checkpointEveryMs: 3600000, checkpointEveryRecords: 1000, maxSegmentBytes: 1 << 20 };
const request = (operation: string) => ({ time: new Date().toISOString(), requestId: 'r', principal: 'p', operation, outcome: 'Success' }) as never;

describe('AuditLog after a crash', () => {
  it('moves a torn last line aside, continues the chain from the last whole record, and the trail verifies', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-audit-unit-'));
    const hsm = new FakeHsm();
    await hsm.generateMacKey(AUDIT_MAC_LABEL);
    const logs: string[] = [];
    const stream = new PassThrough().on('data', (c: Buffer) => logs.push(c.toString()));
    const logger = createLogger({ level: 'info', stream });
    const first = AuditLog.open(dir, hsm, logger, OPTIONS);
    first.append(request('Encrypt'));
    first.append(request('Decrypt'));
    await first.close();
    const segment = path.join(dir, 'audit-00000001.jsonl');
    const torn = '{"seq":4,"type":"request","oper';
    fs.appendFileSync(segment, torn);
    const whileWriting = await verifyAuditTrail(dir, hsm);
    assert.equal(whileWriting.isIntact, true, 'a record being written is not a bad record');
    assert.deepEqual([whileWriting.records, whileWriting.partialTailBytes], [2, torn.length]);

    const second = AuditLog.open(dir, hsm, logger, OPTIONS);
    second.append(request('GenerateDataKey'));
    await second.close();

    const aside = fs.readdirSync(dir).filter((f) => f.startsWith('audit-00000001.jsonl.torn-'));
    assert.equal(aside.length, 1);
    assert.equal(fs.readFileSync(path.join(dir, aside[0]), 'utf8'), torn);
    assert.match(logs.join(''), /torn by a crash, was moved aside/);
    const verification = await verifyAuditTrail(dir, hsm);
    assert.equal(verification.isIntact, true, JSON.stringify(verification.firstBad));
    assert.equal(verification.records, 3);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
