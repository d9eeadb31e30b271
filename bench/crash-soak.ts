/**
 * npm run crash-soak -- --rounds 200 — the randomized kill -9 loop of test/support/crash-loop.ts for
 * as many rounds as wanted, on one data dir: a progress line per round on stderr, the figures as
 * JSON on stdout. Exit 1 when anything acknowledged was lost or the token and the store disagree;
 * the work dir (data dir, every gateway's log, every `qkms orphans` answer) is then kept and named.
 *
 *   --rounds N          rounds (default 100)
 *   --seed S            seed of every choice, to repeat a run's choices (default random)
 *   --concurrency C     load workers (default 6)
 *   --sample-old M      results re-checked per kind per round besides the new ones (default 300; the last round checks all)
 *   --hold-share F      share of rounds killed inside a held PKCS#11 call (default 0.3)
 *   --work-dir DIR      keep everything there
 */
import { parseArgs } from 'node:util';
import { runCrashLoop } from '../test/support/crash-loop';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '100' },
      seed: { type: 'string' },
      concurrency: { type: 'string', default: '6' },
      'sample-old': { type: 'string', default: '300' },
      'hold-share': { type: 'string', default: '0.3' },
      'work-dir': { type: 'string' },
    },
  });
  const figures = await runCrashLoop({
    rounds: Number(values.rounds),
    seed: values.seed === undefined ? undefined : Number(values.seed),
    concurrency: Number(values.concurrency),
    sampleOld: Number(values['sample-old']),
    holdShare: Number(values['hold-share']),
    workDir: values['work-dir'],
    isScanned: false,
    log: (line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`),
  });
  process.stdout.write(`${JSON.stringify(figures, null, 2)}\n`);
  if (figures.failures.length > 0) {
    process.stderr.write(`crash soak FAILED (seed ${figures.seed}); everything is kept in ${figures.workDir}\n`);
    process.exitCode = 1;
  }
}

void main().catch((err) => {
  process.stderr.write(`crash soak failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
