import { Command } from 'commander';
import { CliError, EXIT, describe, type Cli } from '../cli-context';
import { KmsCallError, type KmsCaller } from '../kms-caller';
import { parseInteger } from './keys';

interface BenchOptions {
  key?: string;
  durationS: number;
  concurrency: number;
  bytes: number;
}

/**
 * `qkms bench`: a GenerateDataKey load run against a running gateway, the call every envelope
 * encryption client makes. It measures what an installed gateway answers over the network, with
 * SigV4 and the real HSM; the repository's `npm run bench` (bench/) measures the code itself on
 * a throw-away token and needs the source tree.
 */
export function benchCommand(cli: Cli): Command {
  return new Command('bench')
    .description('GenerateDataKey load run against a gateway (--endpoint required): throughput and latency')
    .option('--key <key>', 'the KMS key to use (default: a key created for the run and scheduled for deletion after it)')
    .option('--duration <seconds>', 'how long to run', parseInteger, 10)
    .option('--concurrency <n>', 'requests in flight at once', parseInteger, 8)
    .option('--bytes <n>', 'NumberOfBytes of each data key (1-1024)', parseInteger, 32)
    .action(async (o: { key?: string; duration: number; concurrency: number; bytes: number }) => {
      if (!cli.endpoint) throw new CliError('bench measures a running gateway: give --endpoint URL (or set QKMS_ENDPOINT)', EXIT.usage);
      if (o.duration < 1 || o.concurrency < 1 || o.bytes < 1 || o.bytes > 1024) throw new CliError('--duration and --concurrency must be at least 1, --bytes 1-1024', EXIT.usage);
      const result = await cli.withKms((kms) => run(cli, kms, { key: o.key, durationS: o.duration, concurrency: o.concurrency, bytes: o.bytes }));
      cli.result(result, () => resultText(result));
      if (result.ok === 0) process.exitCode = EXIT.failed;
    });
}

async function run(cli: Cli, kms: KmsCaller, o: BenchOptions) {
  const keyId = o.key ?? ((await kms.call('CreateKey', { Description: `qkms bench ${new Date().toISOString()}` })).KeyMetadata.KeyId as string);
  if (!o.key) cli.progress(`created key ${keyId} for the run`);
  let measured: Awaited<ReturnType<typeof load>>;
  try {
    measured = await load(cli, kms, keyId, o);
  } finally {
    // Also when the run failed: the key was made for it. Best effort, as the gateway may be gone.
    if (!o.key) await scheduleDeletion(cli, kms, keyId);
  }
  return summary(keyId, o, measured);
}

/**
 * The workers, until the duration ends. A KMS error is a result and is counted; any other error
 * (the gateway went away) is fatal: every worker stops before its next call, and it is thrown.
 */
async function load(cli: Cli, kms: KmsCaller, keyId: string, o: BenchOptions) {
  const latenciesMs: number[] = [];
  const errors = new Map<string, number>();
  let fatal: { error: unknown } | undefined;
  const started = performance.now();
  const endAt = started + o.durationS * 1000;
  const ticker = setInterval(() => {
    const elapsedS = (performance.now() - started) / 1000;
    cli.progress(`${elapsedS.toFixed(0)}s: ${latenciesMs.length} ok, ${sum(errors)} errors, ${(latenciesMs.length / elapsedS).toFixed(0)} req/s`);
  }, 1000);
  const worker = async () => {
    while (!fatal && performance.now() < endAt) {
      const t0 = performance.now();
      try {
        await kms.call('GenerateDataKey', { KeyId: keyId, NumberOfBytes: o.bytes });
        latenciesMs.push(performance.now() - t0);
      } catch (err) {
        if (!(err instanceof KmsCallError)) fatal ??= { error: err };
        else errors.set(err.type, (errors.get(err.type) ?? 0) + 1);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: o.concurrency }, worker));
  } finally {
    clearInterval(ticker);
  }
  if (fatal) throw fatal.error;
  return { latenciesMs, errors, elapsedS: (performance.now() - started) / 1000 };
}

async function scheduleDeletion(cli: Cli, kms: KmsCaller, keyId: string): Promise<void> {
  try {
    await kms.call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 });
    cli.progress(`scheduled the run's key ${keyId} for deletion in 7 days`);
  } catch (err) {
    cli.progress(`could not schedule the run's key ${keyId} for deletion (${describe(err)}): run 'qkms keys schedule-deletion ${keyId}'`);
  }
}

function summary(keyId: string, o: BenchOptions, { latenciesMs, errors, elapsedS }: Awaited<ReturnType<typeof load>>) {
  latenciesMs.sort((a, b) => a - b);
  const pct = (p: number) => round(latenciesMs[Math.min(latenciesMs.length - 1, Math.floor((p / 100) * latenciesMs.length))] ?? 0);
  return {
    operation: 'GenerateDataKey',
    keyId,
    concurrency: o.concurrency,
    numberOfBytes: o.bytes,
    durationS: round(elapsedS),
    ok: latenciesMs.length,
    errors: Object.fromEntries(errors),
    requestsPerSecond: round(latenciesMs.length / elapsedS),
    latencyMs: { p50: pct(50), p90: pct(90), p99: pct(99), max: round(latenciesMs[latenciesMs.length - 1] ?? 0) },
  };
}

function resultText(r: Awaited<ReturnType<typeof run>>): string {
  const errs = Object.entries(r.errors).map(([t, n]) => `${t} ×${n}`).join(', ') || 'none';
  return [
    `GenerateDataKey (${r.numberOfBytes} B) on ${r.keyId}, ${r.concurrency} in flight, ${r.durationS} s`,
    `  ${r.ok} ok, ${r.requestsPerSecond} req/s; errors: ${errs}`,
    `  latency ms: p50 ${r.latencyMs.p50}, p90 ${r.latencyMs.p90}, p99 ${r.latencyMs.p99}, max ${r.latencyMs.max}`,
  ].join('\n');
}

const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
const round = (n: number) => Math.round(n * 100) / 100;
