import { Command } from 'commander';
import type { TokenSurvey } from '../../domain/token-reconciliation';
import { surveyToken } from '../../domain/token-reconciliation';
import { openGatewayOnDataDir } from '../../gateway';
import { CliError, EXIT, describe, type Cli } from '../cli-context';

/**
 * `qkms orphans [--destroy]`: token objects under the qkms/ label prefix that no key owns. Dry run
 * by default: it lists them. With --destroy it destroys exactly the orphans it finds, by id. Direct
 * mode only: it takes the data dir's lock (no gateway may be making objects meanwhile), and opening
 * the data dir first rolls back any unfinished key-material change, as a gateway start does.
 */
export function orphansCommand(cli: Cli): Command {
  return new Command('orphans')
    .description('list token objects (qkms/ labels) that no key owns, and with --destroy destroy them; direct mode, gateway stopped')
    .option('--destroy', 'destroy the orphans listed (after reviewing the dry run)')
    .action(async (o: { destroy?: boolean }) => {
      if (cli.hasEndpointFlag) throw new CliError('orphans works on the token and the store directly: run it where the data dir is, with the gateway stopped, without --endpoint', EXIT.usage);
      const config = cli.config();
      let gateway;
      try {
        gateway = await openGatewayOnDataDir(config, cli.logger());
      } catch (err) {
        throw new CliError(`cannot open the HSM and key store of ${config.dataDir}: ${describe(err)}`, EXIT.unavailable);
      }
      try {
        const { keys, hsm } = gateway.deps;
        const survey = await surveyToken(keys, hsm);
        // A destroy takes every object carrying the id: an orphan made outside QKMS may share a
        // common id (01) with objects outside qkms/, which are never ours to destroy.
        const shared: string[] = [];
        for (const ref of survey.orphaned) {
          const ours = survey.ambiguous.find((a) => a.id === ref.id)?.count ?? 1;
          if ((await hsm.countObjects(ref)) > ours) shared.push(ref.id);
        }
        const destroyed: string[] = [];
        if (o.destroy) {
          for (const ref of survey.orphaned.filter((r) => !shared.includes(r.id))) {
            await hsm.destroyKey(ref);
            destroyed.push(ref.label);
          }
        }
        cli.result({ ...survey, destroyed, sharedId: shared }, () => surveyText(survey, o.destroy === true, shared));
      } finally {
        await gateway.close();
      }
    });
}

function surveyText(s: TokenSurvey, isDestroyed: boolean, shared: string[]): string {
  const lines = [`${s.objects} key objects under qkms/ on the token; ${s.orphaned.length} orphaned, ${s.missing.length} missing, ${s.ambiguous.length} ambiguous`];
  for (const ref of s.orphaned) {
    const note = shared.includes(ref.id) ? '  objects outside qkms/ carry this id too: never destroyed here (use the vendor\'s tool)' : isDestroyed ? '  destroyed' : '';
    lines.push(`  orphan  ${ref.label}  id ${ref.id}${note}`);
  }
  for (const ref of s.missing) lines.push(`  missing ${ref.label}  id ${ref.id}  (its key answers KeyUnavailableException)`);
  for (const ref of s.ambiguous) lines.push(`  ambiguous ${ref.label}  id ${ref.id}: ${ref.count} objects  (its key is refused until one remains; see docs/operations.md)`);
  if (s.orphaned.length > 0 && !isDestroyed) lines.push('dry run: nothing destroyed; run again with --destroy to destroy the orphans listed');
  return lines.join('\n');
}
