import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { describeVerification, verifyAuditTrail } from '../../audit/audit-verify';
import { describeDeployment, verifyPostgresTrail } from '../../audit/postgres-audit-verify';
import type { Config } from '../../config/load-config';
import { openHsm } from '../../gateway';
import { SqliteKeyRepository } from '../../store/sqlite-key-repository';
import { CliError, EXIT, describe, type Cli } from '../cli-context';

/**
 * `qkms audit verify`: checks the audit trail of the data dir record by record (hash chain, the
 * HSM HMACs of batch headers and legacy checkpoints) against the anchor in the key store. It only
 * reads (the store read-only), so it runs beside a gateway and takes no lock. Exit 0 intact, 1
 * tampered. With QKMS_STORE_URL, every replica's chain in the shared database instead.
 */
export function auditCommand(cli: Cli): Command {
  const audit = new Command('audit').description('the audit trail');
  audit
    .command('verify')
    .description('verify the hash chain, the HSM-signed batches and the anchor of QKMS_DATA_DIR/audit (with QKMS_STORE_URL: of every replica\'s chain in the database)')
    .action(async () => {
      const config = cli.config();
      if (config.storeUrl) return verifyDeployment(cli, config, config.storeUrl);
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

/** Each chain of a PostgreSQL deployment; exit 1 when any does not verify. */
async function verifyDeployment(cli: Cli, config: Config, url: string): Promise<void> {
  cli.progress('verifying every replica\'s audit chain in the database…');
  let hsm;
  try {
    hsm = await openHsm(config, cli.logger());
  } catch (err) {
    throw new CliError(`cannot open the HSM: ${describe(err)}`, EXIT.unavailable);
  }
  try {
    let r;
    try {
      r = await verifyPostgresTrail(url, hsm);
    } catch (err) {
      throw new CliError(`cannot read the audit trail from the database: ${describe(err)}`, EXIT.unavailable);
    }
    cli.result(r, () => describeDeployment(r));
    process.exitCode = r.isIntact ? EXIT.ok : EXIT.failed;
  } finally {
    await hsm.close();
  }
}
