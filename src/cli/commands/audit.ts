import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { verifyAuditTrail, type AuditVerification } from '../../audit/audit-verify';
import { openHsm } from '../../gateway';
import { CliError, EXIT, describe, type Cli } from '../cli-context';

/**
 * `qkms audit verify`: checks the audit trail of the data dir (hash chain, and each checkpoint's
 * HMAC in the HSM). It only reads, so it runs beside a gateway and takes no lock. Exit 0 intact,
 * 1 tampered.
 */
export function auditCommand(cli: Cli): Command {
  const audit = new Command('audit').description('the audit trail');
  audit
    .command('verify')
    .description('verify the hash chain and the HSM-signed checkpoints of QKMS_DATA_DIR/audit')
    .action(async () => {
      const config = cli.config();
      // Never create a token or a trail for a mistyped data dir.
      if (!fs.existsSync(path.join(config.dataDir, 'qkms.db'))) throw new CliError(`no key store in ${config.dataDir} (wrong QKMS_DATA_DIR, or run 'qkms init')`, EXIT.usage);
      cli.progress(`verifying ${path.join(config.dataDir, 'audit')}…`);
      let hsm;
      try {
        hsm = await openHsm(config, cli.logger());
      } catch (err) {
        throw new CliError(`cannot open the HSM: ${describe(err)}`, EXIT.unavailable);
      }
      try {
        const r = await verifyAuditTrail(path.join(config.dataDir, 'audit'), hsm);
        cli.result(r, () => verificationText(r));
        process.exitCode = r.isIntact ? EXIT.ok : EXIT.failed;
      } finally {
        await hsm.close();
      }
    });
  return audit;
}

function verificationText(r: AuditVerification): string {
  if (r.isIntact) {
    return `audit trail intact: ${r.records} records, ${r.checkpoints} checkpoints; signed up to seq ${r.lastCheckpointedSeq}, ${r.unsignedTail} newer records not yet checkpointed${r.partialTailBytes ? `; ${r.partialTailBytes} bytes of a record being written (or torn by a crash) after the last one, not checked` : ''}`;
  }
  const b = r.firstBad!;
  return `AUDIT TRAIL TAMPERED: first bad record at ${b.file} line ${b.line}${b.seq !== undefined ? ` (seq ${b.seq})` : ''}: ${b.reason}`;
}
