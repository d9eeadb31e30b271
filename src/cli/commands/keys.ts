import { Command, InvalidArgumentError } from 'commander';
import { type Cli } from '../cli-context';
import { listAll, type KmsCaller } from '../kms-caller';
import { formatTable } from '../table';

type Metadata = Record<string, any>;

/** `qkms keys …`: each subcommand is one KMS operation (or a list of them), in either mode. */
export function keysCommand(cli: Cli): Command {
  const keys = new Command('keys').description('create, list, describe, enable/disable and delete KMS keys');

  keys
    .command('create')
    .description('CreateKey: a new key whose material is generated in the HSM')
    .option('--description <text>', 'Description', '')
    .option('--key-spec <spec>', 'KeySpec, e.g. SYMMETRIC_DEFAULT, RSA_2048, ECC_NIST_P256, HMAC_256', 'SYMMETRIC_DEFAULT')
    .option('--key-usage <usage>', 'KeyUsage: ENCRYPT_DECRYPT, SIGN_VERIFY, GENERATE_VERIFY_MAC, KEY_AGREEMENT')
    .option('--tag <key=value>', 'a tag (repeatable)', collectTag, [])
    .action(async (o: { description: string; keySpec: string; keyUsage?: string; tag: Array<{ TagKey: string; TagValue: string }> }) => {
      const input = { Description: o.description, KeySpec: o.keySpec, ...(o.keyUsage && { KeyUsage: o.keyUsage }), ...(o.tag.length > 0 && { Tags: o.tag }) };
      const { KeyMetadata } = await cli.withKms((kms) => kms.call('CreateKey', input));
      cli.result(KeyMetadata, () => describeText(KeyMetadata));
    });

  keys
    .command('list')
    .description('ListKeys, with DescribeKey of each (state, spec, description) and its aliases (ListAliases)')
    .action(async () => {
      const described = await cli.withKms(async (kms) => {
        const ids = await listAll<{ KeyId: string }>(kms, 'ListKeys', { Limit: 1000 }, 'Keys');
        const aliases = aliasesByKey(await listAll<{ AliasName: string; TargetKeyId?: string }>(kms, 'ListAliases', { Limit: 100 }, 'Aliases'));
        const all: Metadata[] = [];
        for (const { KeyId } of ids) all.push({ ...(await kms.call('DescribeKey', { KeyId })).KeyMetadata, Aliases: aliases.get(KeyId) ?? [] });
        return all;
      });
      cli.result(described, () => (described.length === 0 ? '(no keys)' : keysTable(described)));
    });

  keys
    .command('describe <key>')
    .description('DescribeKey: a key id, key ARN, alias name or alias ARN')
    .action(async (key: string) => {
      const { KeyMetadata } = await cli.withKms((kms) => kms.call('DescribeKey', { KeyId: key }));
      cli.result(KeyMetadata, () => describeText(KeyMetadata));
    });

  for (const [name, operation] of [['enable', 'EnableKey'], ['disable', 'DisableKey'], ['cancel-deletion', 'CancelKeyDeletion']] as const) {
    keys
      .command(`${name} <key>`)
      .description(operation)
      .action(async (key: string) => {
        const { KeyMetadata } = await cli.withKms(async (kms) => {
          const KeyId = await keyIdOf(kms, key);
          await kms.call(operation, { KeyId });
          return kms.call('DescribeKey', { KeyId });
        });
        cli.result(KeyMetadata, () => `${KeyMetadata.KeyId}\t${KeyMetadata.KeyState}`);
      });
  }

  keys
    .command('schedule-deletion <key>')
    .description('ScheduleKeyDeletion: the key and its HSM objects are destroyed after the waiting period')
    .option('--days <n>', 'PendingWindowInDays (7-30)', parseInteger, 30)
    .action(async (key: string, o: { days: number }) => {
      const answer = await cli.withKms(async (kms) => kms.call('ScheduleKeyDeletion', { KeyId: await keyIdOf(kms, key), PendingWindowInDays: o.days }));
      cli.result(answer, () => `${answer.KeyId}\t${answer.KeyState}\tdeleted after ${new Date(answer.DeletionDate * 1000).toISOString()}`);
    });

  return keys;
}

/**
 * The key id behind an alias: EnableKey, DisableKey and the deletion operations take no alias (as
 * in AWS KMS), the CLI does, through DescribeKey.
 */
async function keyIdOf(kms: KmsCaller, key: string): Promise<string> {
  return key.includes('alias/') ? ((await kms.call('DescribeKey', { KeyId: key })).KeyMetadata.KeyId as string) : key;
}

function aliasesByKey(aliases: Array<{ AliasName: string; TargetKeyId?: string }>): Map<string, string[]> {
  const byKey = new Map<string, string[]>();
  for (const { AliasName, TargetKeyId } of aliases) {
    if (TargetKeyId) byKey.set(TargetKeyId, [...(byKey.get(TargetKeyId) ?? []), AliasName]);
  }
  return byKey;
}

function keysTable(keys: Metadata[]): string {
  const rows = keys.map((m) => [m.KeyId, m.Aliases.length > 0 ? m.Aliases.join(',') : '-', m.KeyState, m.KeySpec, m.KeyUsage, m.Description ?? '']);
  return formatTable(['KEY ID', 'ALIASES', 'STATE', 'SPEC', 'USAGE', 'DESCRIPTION'], rows);
}

function describeText(m: Metadata): string {
  const dates = new Set(['CreationDate', 'DeletionDate']);
  return Object.entries(m)
    .map(([k, v]) => `${k}: ${dates.has(k) && typeof v === 'number' ? new Date(v * 1000).toISOString() : typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join('\n');
}

function collectTag(value: string, previous: Array<{ TagKey: string; TagValue: string }>) {
  const at = value.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError('a tag is key=value');
  return [...previous, { TagKey: value.slice(0, at), TagValue: value.slice(at + 1) }];
}

export function parseInteger(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('a whole number is expected');
  return Number(value);
}
