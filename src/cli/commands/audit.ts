import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { describeVerification, verifyAuditTrail } from '../../audit/audit-verify';
import { openHsm } from '../../gateway';
import { SqliteKeyRepository } from '../../store/sqlite-key-repository';
import { CliError, EXIT, describe, type Cli } from '../cli-context';

/**
 * `qkms audit verify`: checks the audit trail of the data dir record by record (hash chain, the
 * HSM HMACs of batch headers and legacy checkpoints) against the anchor in the key store. It only
 * reads (the store read-only), so it runs beside a gateway and takes no lock. Exit 0 intact, 1
 * tampered.
 */
export function auditCommand(cli: Cli): Command {
  const audit = new Command('audit').description('the audit trail');
  audit
    .command('verify')
    .description('verify the hash chain, the HSM-signed batches and the anchor of QKMS_DATA_DIR/audit')
    .action(async () => {
      const config = cli.config();
      const storeFile = path.join(config.dataDir, 'qkms.db');
      // Never create a token or a trail for a mistyped data dir.
      if (!fs.existsSync(storeFile)) throw new CliError(`no key store in ${config.dataDir} (wrong QKMS_DATA_DIR, or run 'qkms init')`, EXIT.usage);
      cli.progress(`verifying ${path.join(config.dataDir, 'audit')}…`);
      let keys: SqliteKeyRepository;
      let hsm;
      try {
        keys = new SqliteKeyRepository(storeFile, { isReadOnly: true });
        hsm = await openHsm(config, cli.logger());
      } catch (err) {
        throw new CliError(`cannot open the key store and HSM of ${config.dataDir}: ${describe(err)}`, EXIT.unavailable);
      }
      try {
        // The anchor first: a gateway running beside us only moves it forward, past what we then read.
        const anchor = await keys.getAuditAnchor();
        const r = await verifyAuditTrail(path.join(config.dataDir, 'audit'), hsm, anchor);
        cli.result(r, () => describeVerification(r));
        process.exitCode = r.isIntact ? EXIT.ok : EXIT.failed;
      } finally {
        await keys.close();
        await hsm.close();
      }
    });
  return audit;
}
