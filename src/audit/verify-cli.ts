import path from 'node:path';
import { loadConfigOrExit } from '../config/load-config';
import { openHsm } from '../gateway';
import { createLogger } from '../logging/logger';
import { verifyAuditTrail } from './audit-verify';

/**
 * `npm run audit:verify`: checks the audit trail of QKMS_DATA_DIR with the same configuration as
 * the gateway (it needs the HSM for the checkpoint HMACs). Exit 0 intact, 1 tampered, 2 bad config.
 */
async function main(): Promise<void> {
  const config = loadConfigOrExit(process.env, 'qkms audit:verify');
  const hsm = await openHsm(config, createLogger({ level: 'error' }));
  try {
    const dir = path.join(config.dataDir, 'audit');
    const r = await verifyAuditTrail(dir, hsm);
    if (r.isIntact) {
      process.stdout.write(`audit trail intact: ${r.records} records, ${r.checkpoints} checkpoints; signed up to seq ${r.lastCheckpointedSeq}, ${r.unsignedTail} newer records not yet checkpointed\n`);
    } else {
      const b = r.firstBad!;
      process.stdout.write(`AUDIT TRAIL TAMPERED: first bad record at ${b.file} line ${b.line}${b.seq !== undefined ? ` (seq ${b.seq})` : ''}: ${b.reason}\n`);
    }
    process.exitCode = r.isIntact ? 0 : 1;
  } finally {
    await hsm.close();
  }
}

void main();
