import path from 'node:path';
import { Command } from 'commander';
import { envelopeModes, type EnvelopeModes } from '../../domain/envelope';
import { openHsm } from '../../gateway';
import { CAPABILITY_FEATURES, coreProblems, rsaOaepSha256Note, type CapabilityName, type TokenCapabilities } from '../../hsm/capabilities';
import { existingEmbeddedModule } from '../../hsm/pkcs11/embedded-token';
import { listSlots, type SlotReport } from '../../hsm/pkcs11/slot-info';
import { CliError, EXIT, describe, type Cli } from '../cli-context';
import { LocalCaller } from '../local-caller';

/** `qkms init`, `qkms slots` and `qkms token capabilities`: the token itself. */
export function tokenCommands(cli: Cli): Command[] {
  const init = new Command('init')
    .description('prepare QKMS_DATA_DIR and its token: the embedded SoftHSM2 token (created if missing), the key store and the internal HSM keys')
    .action(async () => {
      const config = cli.config();
      if (cli.hasEndpointFlag) throw new CliError('init works on the data dir directly; it takes no --endpoint', EXIT.usage);
      cli.progress(`initialising ${config.dataDir} (token '${config.pkcs11.tokenLabel}')…`);
      let kms: LocalCaller;
      try {
        kms = await LocalCaller.open(config, cli.logger());
      } catch (err) {
        throw new CliError(`cannot initialise ${config.dataDir}: ${describe(err)}`, EXIT.unavailable);
      }
      await kms.close();
      const summary = { dataDir: config.dataDir, tokenLabel: config.pkcs11.tokenLabel, embedded: !config.pkcs11.modulePath, store: path.join(config.dataDir, 'qkms.db') };
      cli.result(summary, () => `ready: ${summary.dataDir} (token '${summary.tokenLabel}'${summary.embedded ? ', embedded SoftHSM2' : ''})`);
    });

  const slots = new Command('slots')
    .description('the slots of the PKCS#11 module and their tokens (no PIN needed)')
    .option('--module <path>', 'a PKCS#11 module (default: QKMS_PKCS11_MODULE, or the embedded token of the data dir)')
    .action((o: { module?: string }) => {
      // With --module no configuration is needed (nor a PIN, which QKMS_PKCS11_MODULE would require).
      const config = o.module ? undefined : cli.config();
      const modulePath = o.module ?? config?.pkcs11.modulePath ?? existingEmbeddedModule(config!.dataDir);
      if (!modulePath) throw new CliError(`no PKCS#11 module: set QKMS_PKCS11_MODULE, give --module, or run 'qkms init' to create the embedded token in ${config!.dataDir}`, EXIT.usage);
      let slots: SlotReport[];
      try {
        slots = listSlots(modulePath, o.module ? undefined : config?.pkcs11.initArgs);
      } catch (err) {
        throw new CliError(describe(err), EXIT.unavailable);
      }
      cli.result({ module: modulePath, slots }, () => slotsText(modulePath, slots, config?.pkcs11.tokenLabel));
    });

  const capabilities = new Command('capabilities')
    .description('what the token can do, found by probing it as a gateway start does: mechanism -> KMS features, and whether QKMS can serve on it')
    .action(async () => {
      if (cli.hasEndpointFlag) throw new CliError('token capabilities probes the token directly; it takes no --endpoint', EXIT.usage);
      const config = cli.config();
      let hsm;
      try {
        hsm = await openHsm(config, cli.logger());
      } catch (err) {
        throw new CliError(`cannot open the token: ${describe(err)}`, EXIT.unavailable);
      }
      const caps = hsm.capabilities();
      await hsm.close();
      const problems = coreProblems(caps, config.dataKeyWrap);
      const modes = envelopeModes(caps, config.dataKeyWrap);
      cli.result({ ...caps, problems, dataKeys: modes.dataKeys, encrypt: modes.encrypt }, () => capabilitiesText(caps, problems, modes));
      if (problems.length > 0) process.exitCode = EXIT.usage; // as the gateway, which exits 2 on such a token
    });
  const token = new Command('token').description('the PKCS#11 token: what it can do').addCommand(capabilities);

  return [init, slots, token];
}

function capabilitiesText(caps: TokenCapabilities, problems: string[], modes: EnvelopeModes): string {
  const lines = [`token: ${caps.token.manufacturer} ${caps.token.model} (library ${caps.token.library})`];
  const width = Math.max(...Object.values(caps.checks).map((c) => c.mechanism.length));
  for (const [name, c] of Object.entries(caps.checks)) {
    lines.push(`  ${c.ok ? 'yes' : 'NO '}  ${c.mechanism.padEnd(width)}  ${CAPABILITY_FEATURES[name as CapabilityName]}${c.ok ? '' : `  — ${c.detail}`}`);
  }
  lines.push(`data keys sealed as: ${modes.dataKeys.join(', ') || 'nothing'}${caps.genericSecretBytes ? ` (key objects of ${caps.genericSecretBytes.min}–${caps.genericSecretBytes.max} bytes)` : ''}; Encrypt as ${modes.encrypt}`);
  lines.push(rsaOaepSha256Note(caps));
  if (!caps.allowedMechanismsAttribute) lines.push('CKA_ALLOWED_MECHANISMS is refused on token objects: keys are limited by their usage flags only');
  lines.push(problems.length === 0 ? 'QKMS can serve on this token; the operations marked NO answer UnsupportedOperationException' : `QKMS cannot serve on this token:\n  ${problems.join('\n  ')}`);
  return lines.join('\n');
}

function slotsText(modulePath: string, slots: SlotReport[], ourLabel: string | undefined): string {
  const lines = [`module ${modulePath}: ${slots.length} slot(s)`];
  for (const s of slots) {
    lines.push(`slot ${s.slotId}: ${s.description} (${s.manufacturer})${s.hasToken ? '' : ' — no token'}`);
    const t = s.token;
    if (!t) continue;
    const mark = t.label === ourLabel ? '  <- QKMS_PKCS11_TOKEN_LABEL' : '';
    lines.push(`  token '${t.label}'${mark}`);
    lines.push(`  ${t.manufacturer} ${t.model}, serial ${t.serialNumber || '-'}, firmware ${t.firmwareVersion}`);
    lines.push(`  initialized ${t.isInitialized}, user PIN set ${t.isUserPinInitialized}, login required ${t.isLoginRequired}, RNG ${t.hasRng}, write-protected ${t.isWriteProtected}`);
  }
  return lines.join('\n');
}
