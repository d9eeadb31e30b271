import fs from 'node:fs';
import path from 'node:path';
import { AUDIT_MAC_KEY, chainHash, checkpointMessage, GENESIS } from '../../src/audit/audit-record';
import type { Hsm } from '../../src/hsm/hsm';

/**
 * A trail in the format before batch headers and anchors (still read and adopted once):
 * request records and, every `checkpointEvery` records, a checkpoint record whose HMAC (made in the
 * HSM) covers the head, all in one hash chain in audit-00000001.jsonl; `unsignedTail` more records
 * after the last checkpoint.
 */
export async function writeLegacyTrail(dir: string, hsm: Hsm, { checkpoints, checkpointEvery, unsignedTail }: { checkpoints: number; checkpointEvery: number; unsignedTail: number }): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const lines: string[] = [];
  let seq = 0;
  let head = GENESIS;
  const write = (record: Record<string, unknown>) => {
    const withPrev = { seq: ++seq, ...record, prev: head };
    head = chainHash(withPrev);
    lines.push(JSON.stringify({ ...withPrev, hash: head }));
  };
  const request = (i: number) => ({
    type: 'request', time: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(), requestId: `legacy-${i}`, operation: 'GenerateDataKey',
    principal: 'arn:aws:iam::111122223333:root', accessKeyId: 'AKIAQKMSTESTADMIN01', sourceIp: '127.0.0.1', keyArn: null, status: 200, errorCode: null,
  });
  let n = 0;
  for (let c = 0; c < checkpoints; c++) {
    for (let i = 0; i < checkpointEvery; i++) write(request(n++));
    const mac = await hsm.hmacSign(AUDIT_MAC_KEY, checkpointMessage(seq, head));
    write({ type: 'checkpoint', time: new Date().toISOString(), coversSeq: seq, coversHash: head, mac: mac.toString('hex') });
  }
  for (let i = 0; i < unsignedTail; i++) write(request(n++));
  fs.writeFileSync(path.join(dir, 'audit-00000001.jsonl'), lines.map((l) => `${l}\n`).join(''));
  return lines;
}
