import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { openHsm } from '../../gateway';
import { withDeadline } from '../../hsm/deadline-hsm';
import type { Hsm } from '../../hsm/hsm';
import { HsmError } from '../../hsm/hsm-error';
import { buildComplianceReport } from '../../report/compliance-report';
import { renderReportHtml } from '../../report/report-html';
import { SqliteKeyRepository } from '../../store/sqlite-key-repository';
import { CliError, EXIT, describe, type Cli } from '../cli-context';

/**
 * `qkms report --out DIR`: the compliance report (report.json, report.html). It only reads — the
 * store opened read-only, the token through a session of its own, the audit files — so it takes
 * no data-dir lock and runs beside a gateway. Exit 1 when a key fails or the audit trail does not
 * verify, so CI can gate on it; the files are written either way.
 */
export function reportCommand(cli: Cli): Command {
  return new Command('report')
    .description('compliance report of every key: token attributes, verdict, history, policy, grants, audit trail')
    .requiredOption('--out <dir>', 'directory for report.json and report.html (created if missing)')
    .action(async (o: { out: string }) => {
      if (cli.hasEndpointFlag) throw new CliError('report reads the token and the store directly: run it where the data dir is, without --endpoint', EXIT.usage);
      const config = cli.config();
      if (config.storeUrl) {
        throw new CliError('report reads the embedded store and its audit files; a PostgreSQL deployment (QKMS_STORE_URL) is not supported by it yet: use qkms audit verify for its trail', EXIT.usage);
      }
      const storeFile = path.join(config.dataDir, 'qkms.db');
      if (!fs.existsSync(storeFile)) throw new CliError(`no key store in ${config.dataDir} (wrong QKMS_DATA_DIR, or run 'qkms init')`, EXIT.usage);
      let keys: SqliteKeyRepository;
      let hsm: Hsm;
      try {
        keys = new SqliteKeyRepository(storeFile, { isReadOnly: true, region: config.region });
        hsm = await openHsm(config, cli.logger());
      } catch (err) {
        throw new CliError(`cannot open the key store and HSM of ${config.dataDir}: ${describe(err)}`, EXIT.unavailable);
      }
      try {
        const report = await buildComplianceReport(
          { keys, hsm: withDeadline(hsm, config.hsmTimeoutMs), scope: { accountId: config.accountId, region: config.region, format: config.arnFormat }, regions: config.regions },
          { dataDir: config.dataDir, token: { label: config.pkcs11.tokenLabel, module: config.pkcs11.modulePath ?? 'embedded SoftHSM2' }, now: new Date() },
          (message) => cli.progress(message),
        ).catch((err: unknown) => {
          // A token that fails while being read says nothing about the keys: no verdict, no files.
          if (err instanceof HsmError) throw new CliError(`the HSM failed while the report read it; no report was written: ${describe(err)}`, EXIT.unavailable);
          throw err;
        });
        fs.mkdirSync(o.out, { recursive: true });
        const files = { json: path.resolve(o.out, 'report.json'), html: path.resolve(o.out, 'report.html') };
        fs.writeFileSync(files.json, `${JSON.stringify(report, null, 2)}\n`);
        fs.writeFileSync(files.html, renderReportHtml(report));
        const s = report.summary;
        cli.result({ ...s, files }, () => `${s.keys} keys: ${s.passing} pass, ${s.failing} fail; audit trail ${s.isAuditIntact ? 'intact' : 'NOT intact'}\n${files.json}\n${files.html}`);
        if (s.failing > 0 || !s.isAuditIntact) process.exitCode = EXIT.failed;
      } finally {
        await keys.close();
        await hsm.close();
      }
    });
}
