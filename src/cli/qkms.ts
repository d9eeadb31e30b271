#!/usr/bin/env node
import fs from 'node:fs';
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { DataDirLockedError } from '../store/data-dir-lock';
import { Cli, CliError, EXIT, describe, type GlobalOptions } from './cli-context';
import { EndpointError } from './http-caller';
import { KmsCallError } from './kms-caller';
import { aliasesCommand } from './commands/aliases';
import { auditCommand } from './commands/audit';
import { benchCommand } from './commands/bench';
import { keysCommand } from './commands/keys';
import { orphansCommand } from './commands/orphans';
import { reportCommand } from './commands/report';
import { tokenCommands } from './commands/token';

/**
 * `qkms`, the admin CLI (docs/cli.md). The process entry: it alone reads process.env and sets the
 * exit code. Errors meant for the operator print one line on stderr, never a stack.
 */
export function buildProgram(env: Record<string, string | undefined>): Command {
  const program = new Command('qkms')
    .description('QKMS admin: keys, aliases, the token and its orphaned objects, the audit trail, compliance report, benchmark')
    .version(packageVersion(), '-V, --version', 'the qkms version')
    .option('--endpoint <url>', 'talk to a running gateway (SigV4); default QKMS_ENDPOINT, AWS_ENDPOINT_URL_KMS, AWS_ENDPOINT_URL; none: work directly on QKMS_DATA_DIR')
    .option('--direct', 'work directly on QKMS_DATA_DIR even when an endpoint variable is set')
    .option('--region <region>', 'SigV4 region (default QKMS_REGION, else with AWS credentials AWS_REGION or the profile\'s, else us-east-1)')
    .option('--access-key-id <id>', 'access key id (default QKMS_ACCESS_KEY_ID, else the AWS default credential chain)')
    .option('--secret-access-key-file <file>', 'file holding the secret access key (default QKMS_SECRET_ACCESS_KEY)')
    .option('--dev-credential', 'sign with the public development credential a loopback gateway accepts')
    .option('--data-dir <dir>', 'direct mode: the data dir (default QKMS_DATA_DIR)')
    .addOption(new Option('-o, --output <format>', 'table for people, json for scripts').choices(['table', 'json']).default('table'))
    .option('--json', 'same as --output json');
  const cli = new Cli(env, () => program.opts<GlobalOptions>());
  for (const command of [keysCommand(cli), aliasesCommand(cli), ...tokenCommands(cli), orphansCommand(cli), auditCommand(cli), reportCommand(cli), benchCommand(cli)]) {
    program.addCommand(command);
  }
  throwInsteadOfExit(program);
  return program;
}

/** package.json's version; the file sits two levels up from both src/cli and dist/cli. */
function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
}

/** Commander exits by itself (code 1) on bad usage; every level must throw instead, to exit 2. */
function throwInsteadOfExit(command: Command): void {
  command.exitOverride().showHelpAfterError();
  command.commands.forEach(throwInsteadOfExit);
}

/** Runs argv (without node and script) and resolves to the exit code. */
export async function runCli(argv: string[], env: Record<string, string | undefined>): Promise<number> {
  try {
    await buildProgram(env).parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage; // commander printed it
    const [message, code] = classify(err);
    process.stderr.write(`qkms: ${message}\n`);
    return code;
  }
}

function classify(err: unknown): [string, number] {
  if (err instanceof CliError) return [err.message, err.exitCode];
  if (err instanceof KmsCallError) return [err.message, EXIT.failed];
  if (err instanceof EndpointError) return [err.message, EXIT.unavailable];
  if (err instanceof DataDirLockedError) return [err.message, EXIT.unavailable];
  return [`unexpected failure: ${describe(err)}`, EXIT.failed];
}

if (require.main === module) {
  void runCli(process.argv.slice(2), process.env).then((code) => {
    process.exitCode = code;
  });
}
