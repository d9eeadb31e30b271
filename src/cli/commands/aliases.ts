import { Command } from 'commander';
import type { Cli } from '../cli-context';
import { listAll } from '../kms-caller';
import { formatTable } from '../table';

/** `qkms aliases …`: CreateAlias, ListAliases, UpdateAlias, DeleteAlias. */
export function aliasesCommand(cli: Cli): Command {
  const aliases = new Command('aliases').description('manage aliases (alias/<name>)');

  // CreateAlias and UpdateAlias take the same two arguments and answer nothing.
  for (const [command, operation, description] of [
    ['create', 'CreateAlias', 'CreateAlias: point a new alias/<name> at a key'],
    ['update', 'UpdateAlias', 'UpdateAlias: point an existing alias at another key'],
  ] as const) {
    aliases
      .command(`${command} <alias> <key>`)
      .description(description)
      .action(async (alias: string, key: string) => {
        await cli.withKms((kms) => kms.call(operation, { AliasName: alias, TargetKeyId: key }));
        cli.result({ AliasName: alias, TargetKeyId: key }, () => `${alias} -> ${key}`);
      });
  }

  aliases
    .command('list')
    .description('ListAliases, optionally of one key')
    .option('--key <key>', 'only the aliases of this key')
    .action(async (o: { key?: string }) => {
      const all = await cli.withKms((kms) => listAll<Record<string, any>>(kms, 'ListAliases', { Limit: 100, ...(o.key && { KeyId: o.key }) }, 'Aliases'));
      cli.result(all, () => (all.length === 0 ? '(no aliases)' : formatTable(['ALIAS', 'TARGET KEY ID'], all.map((a) => [a.AliasName, a.TargetKeyId ?? '-']))));
    });

  aliases
    .command('delete <alias>')
    .description('DeleteAlias')
    .action(async (alias: string) => {
      await cli.withKms((kms) => kms.call('DeleteAlias', { AliasName: alias }));
      cli.result({ AliasName: alias, deleted: true }, () => `${alias} deleted`);
    });

  return aliases;
}
