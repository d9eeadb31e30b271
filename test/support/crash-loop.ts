import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KMSClient } from '@aws-sdk/client-kms';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { listeningAddress, spawnGateway } from './child-gateway';
import { runQkms } from './cli';
import { checkAcknowledged } from './crash-loop/after-restart';
import { countCheck, countKill, countLedger, emptyFigures, type CrashLoopFigures } from './crash-loop/figures';
import { Ledger } from './crash-loop/ledger';
import { MixedLoad } from './crash-loop/mixed-load';
import { Rng } from './crash-loop/rng';
import { recordAuditFiles, TEST_CREDENTIALS } from './harness';
import { registerSecret } from './secrets';
import { tokenVsStore } from './token-state';

export interface CrashLoopOptions {
  rounds: number;
  /** Seeds every choice (operation, key, kill moment, held call); random by default. */
  seed?: number;
  /** Load workers, each with one request in flight. */
  concurrency?: number;
  /** A plain kill lands uniformly within this many ms of the load's start. */
  maxKillDelayMs?: number;
  /** Share of rounds that hold a random PKCS#11 call (QKMS_FAULTS_FILE) and kill inside it. */
  holdShare?: number;
  /** Share of restarts that are themselves killed during start-up (reconciliation), at a random moment. */
  startupKillShare?: number;
  /** Results checked after an earlier round are re-checked at most this many per kind per round; the last round checks all. */
  sampleOld?: number;
  /** Kept afterwards (always kept when something failed). */
  workDir?: string;
  /** Progress lines (one per round). */
  log?: (line: string) => void;
  /**
   * Logs, audit files and a sample of plaintexts join the integration suite's secret scan
   * (test/integration/zz-log-scan.test.ts); default true. A long soak keeps them on disk only.
   */
  isScanned?: boolean;
}

export type { CrashLoopFigures } from './crash-loop/figures';

interface Running {
  output(): string;
  child: ReturnType<typeof spawnGateway>['child'];
  exited: Promise<number | null>;
  client?: KMSClient;
}

const HOLDS: Array<[fn: string, after: boolean]> = [
  ['C_GenerateKey', false], ['C_GenerateKey', true], ['C_GenerateKey', true], ['C_GenerateKeyPairAsync', true],
  ['C_WrapKey', false], ['C_WrapKey', true], ['C_Encrypt', true], ['C_Decrypt', false], ['C_UnwrapKey', true],
  ['C_Sign', true], ['C_DestroyObject', false], ['C_GetAttributeValue', true],
];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Issue 12's randomized crash test: for N rounds on ONE data dir (damage would accumulate), a real
 * gateway process over its embedded SoftHSM2 token and SQLite store takes a mixed concurrent load
 * through the AWS SDK and is SIGKILLed at a random moment — in some rounds inside a PKCS#11 call
 * held by QKMS_FAULTS_FILE, in some while the restart itself reconciles. After each restart every
 * acknowledged result is checked over the API (test/support/crash-loop/after-restart.ts), the token
 * is listed afresh against the store (tokenVsStore), and with the gateway stopped `qkms orphans
 * --json` must agree. Only 200s count as acknowledged; 5xx and broken connections are tolerated.
 */
export async function runCrashLoop(options: CrashLoopOptions): Promise<CrashLoopFigures> {
  return new CrashLoop(options).run();
}

class CrashLoop {
  private readonly rng: Rng;
  private readonly ledger = new Ledger();
  private readonly workDir: string;
  private readonly dataDir: string;
  private readonly faultsFile: string;
  private readonly env: Record<string, string>;
  private readonly figures: CrashLoopFigures;
  private secretsRegistered = 0;
  private readonly isScanned: boolean;
  /** Gateway processes not yet exited: killed if the loop itself fails. */
  private readonly alive = new Set<Running>();

  constructor(private readonly options: CrashLoopOptions) {
    this.isScanned = options.isScanned ?? true;
    this.rng = new Rng(options.seed ?? Math.floor(Math.random() * 2 ** 31));
    this.workDir = options.workDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-crash-loop-'));
    fs.mkdirSync(path.join(this.workDir, 'logs'), { recursive: true });
    this.dataDir = path.join(this.workDir, 'data');
    this.faultsFile = path.join(this.workDir, 'faults.json');
    fs.writeFileSync(this.faultsFile, '[]');
    this.env = { QKMS_DATA_DIR: this.dataDir, QKMS_FAULTS_FILE: this.faultsFile, QKMS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId, QKMS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey };
    this.figures = emptyFigures(this.rng.seed, this.workDir);
  }

  async run(): Promise<CrashLoopFigures> {
    const started = Date.now();
    try {
      for (let round = 1; round <= this.options.rounds && this.figures.failures.length === 0; round++) {
        await this.round(round);
        this.figures.rounds = round;
      }
    } catch (err) {
      this.fail(`round ${this.figures.rounds + 1}: the loop itself failed: ${err instanceof Error ? err.stack : String(err)}`);
      for (const gw of this.alive) gw.child.kill('SIGKILL');
      await Promise.all([...this.alive].map((gw) => gw.exited));
    }
    this.figures.durationS = Math.round((Date.now() - started) / 1000);
    countLedger(this.figures, this.ledger);
    if (this.isScanned && fs.existsSync(path.join(this.dataDir, 'pin'))) registerSecret(fs.readFileSync(path.join(this.dataDir, 'pin'), 'utf8'));
    if (this.isScanned) recordAuditFiles(this.dataDir);
    if (this.figures.failures.length === 0 && !this.options.workDir) {
      fs.rmSync(this.workDir, { recursive: true, force: true });
      delete this.figures.workDir;
    }
    return this.figures;
  }

  private fail(what: string): void {
    this.figures.failures.push(`seed ${this.rng.seed}, ${what}`);
  }

  private async round(round: number): Promise<void> {
    const gw = await this.launch(`r${round}-load`);
    const kill = await this.loadAndKill(gw, round);
    if (this.rng.next() < (this.options.startupKillShare ?? 0.15)) await this.killDuringStartup(round);
    const restarted = await this.launch(`r${round}-restart`);
    this.readStartup(round, restarted.output());
    const isLast = round === this.options.rounds;
    const tally = await checkAcknowledged(restarted.client!, this.ledger, {
      round, sampleOld: isLast ? Infinity : (this.options.sampleOld ?? Infinity), concurrency: 8, rng: this.rng, onLoss: (what) => this.fail(what),
    });
    countCheck(this.figures, tally);
    const token = this.checkToken(round);
    await this.stop(restarted, round);
    await this.askCli(round, token);
    await this.checkAuditTrail(round);
    this.options.log?.(
      `round ${round}/${this.options.rounds}: killed ${kill.how}, ${kill.inFlight} requests in flight; checked ${tally.keys} keys, ${tally.aliases} aliases, ` +
        `${tally.ciphertexts} ciphertexts (${tally.newCiphertexts} new), ${tally.signatures} signatures; token ${token.materials} objects; ${this.figures.failures.length} failures`,
    );
  }

  /** Spawns a gateway and waits until it is ready; its output goes to logs/<name>.log when it exits. */
  private async launch(name: string, options: { isReadyAwaited: boolean } = { isReadyAwaited: true }): Promise<Running> {
    const { child, output, exited } = spawnGateway(this.env, { isLogRecorded: this.isScanned });
    const running: Running = { child, output, exited };
    this.alive.add(running);
    void exited.then(() => {
      this.alive.delete(running);
      fs.writeFileSync(path.join(this.workDir, 'logs', `${name}.log`), output());
    });
    if (!options.isReadyAwaited) return running;
    for (const deadline = Date.now() + 60000; !/"message":"ready"/.test(output()); await sleep(25)) {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`the gateway (${name}) did not start (exit ${child.exitCode}); log in ${this.workDir}/logs/${name}.log:\n${output().slice(-3000)}`);
      }
    }
    const requestHandler = new NodeHttpHandler({ connectionTimeout: 5000, requestTimeout: 30000 });
    running.client = new KMSClient({ endpoint: `http://${listeningAddress(output())}`, region: 'us-east-1', credentials: TEST_CREDENTIALS, maxAttempts: 1, requestHandler });
    return running;
  }

  /** Runs the load and kills the gateway: after a random delay, or a moment after a random PKCS#11 call was held. */
  private async loadAndKill(gw: Running, round: number): Promise<{ how: string; inFlight: number }> {
    const load = new MixedLoad(gw.client!, this.ledger, this.rng, {
      round,
      concurrency: this.options.concurrency ?? 6,
      onSecret: (v) => this.sampleSecret(v),
      onLoss: (what) => {
        this.figures.lost.ciphertexts++;
        this.fail(what);
      },
    });
    const hold = this.rng.next() < (this.options.holdShare ?? 0.3) ? this.rng.pick(HOLDS)! : undefined;
    // Re-read by the gateway within a second of a call; held for longer than the kill can take.
    if (hold) fs.writeFileSync(this.faultsFile, JSON.stringify([{ function: hold[0], after: hold[1], skip: this.rng.int(0, 3), delayMs: 60000, count: 1 }]));
    const holding = new RegExp(`fault injection: holding ${hold?.[0]} `);
    load.start();
    const started = Date.now();
    if (hold) {
      while (!holding.test(gw.output()) && Date.now() - started < 5000) await sleep(10);
      await sleep(this.rng.int(0, 100));
    } else {
      await sleep(this.rng.int(20, this.options.maxKillDelayMs ?? 1500));
    }
    const isHeld = hold !== undefined && holding.test(gw.output());
    const killedAfterMs = Date.now() - started;
    const settled = load.stop(); // nothing new is sent from here on
    const inFlight = load.inFlightNow();
    gw.child.kill('SIGKILL');
    await gw.exited;
    await settled;
    gw.client!.destroy();
    fs.writeFileSync(this.faultsFile, '[]');
    countKill(this.figures, load.counts, inFlight, isHeld);
    const how = `after ${killedAfterMs} ms${isHeld ? ` inside a held ${hold![0]} (${hold![1] ? 'after' : 'before'} the call)` : ''}`;
    return { how, inFlight: Object.values(inFlight).reduce((sum, x) => sum + x, 0) };
  }

  /** A restart killed at a random moment of its start-up (token, store, reconciliation); the next start must finish the job. */
  private async killDuringStartup(round: number): Promise<void> {
    const starting = await this.launch(`r${round}-killed-starting`, { isReadyAwaited: false });
    await sleep(this.rng.int(50, 1000)); // start-up takes about a second here
    if (!/"message":"ready"/.test(starting.output())) this.figures.kills.duringStartup++;
    starting.child.kill('SIGKILL');
    await starting.exited;
    this.figures.kills.total++;
  }

  private readStartup(round: number, output: string): void {
    const m = /(\d+) unfinished key-material changes rolled back, (\d+) objects missing, (\d+) orphaned, (\d+) ambiguous/.exec(output);
    if (!m) return this.fail(`round ${round}: the restart did not report its reconciliation`);
    const [rolledBack, missing, orphaned, ambiguous] = m.slice(1).map(Number);
    this.figures.rolledBackAtStartup += rolledBack;
    this.figures.token.reportedAtStartup += missing + orphaned + ambiguous;
    if (missing + orphaned + ambiguous > 0) this.fail(`round ${round}: the restart reconciled with ${missing} objects missing, ${orphaned} orphaned, ${ambiguous} ambiguous`);
  }

  private checkToken(round: number): ReturnType<typeof tokenVsStore> {
    const token = tokenVsStore(this.dataDir);
    this.figures.token.orphans += token.orphans.length;
    this.figures.token.missing += token.missing.length;
    this.figures.token.duplicates += token.duplicates.length;
    this.figures.token.intentsLeft += token.intents;
    this.figures.token.objectsAtEnd = token.materials;
    this.figures.token.keysAtEnd = token.keys;
    if (token.orphans.length + token.missing.length + token.duplicates.length + token.intents > 0) {
      this.fail(`round ${round}: after the restart the token (pkcs11-tool) and the store disagree: ${JSON.stringify({ orphans: token.orphans, missing: token.missing, duplicates: token.duplicates, intents: token.intents })}`);
    }
    return token;
  }

  private async stop(gw: Running, round: number): Promise<void> {
    gw.child.kill('SIGTERM');
    const code = await gw.exited;
    gw.client!.destroy();
    if (code !== 0) this.fail(`round ${round}: the gateway stopped by SIGTERM exited ${code}`);
  }

  /** `qkms orphans --json` in direct mode, with the gateway stopped: the same token, the same verdict. */
  private async askCli(round: number, token: ReturnType<typeof tokenVsStore>): Promise<void> {
    const run = await runQkms(['--json', 'orphans'], this.env);
    fs.writeFileSync(path.join(this.workDir, 'logs', `r${round}-orphans.log`), `exit ${run.code}\n${run.stdout}\n${run.stderr}`);
    this.figures.checked.orphanCliRuns++;
    const survey = run.code === 0 ? (JSON.parse(run.stdout) as { objects: number; missing: unknown[]; orphaned: unknown[]; ambiguous: unknown[] }) : undefined;
    if (!survey || survey.orphaned.length + survey.missing.length + survey.ambiguous.length > 0 || survey.objects !== token.materials) {
      this.figures.token.cliDisagreements++;
      this.fail(`round ${round}: qkms orphans --json exited ${run.code} with ${run.stdout.trim() || run.stderr.trim()}; pkcs11-tool found ${token.materials} objects, all owned`);
    }
  }

  /**
   * The audit trail after the kill and the restart: `qkms audit verify` passes, and every answer the
   * load acknowledged has its record (an answer leaves only once its record is durable).
   */
  private async checkAuditTrail(round: number): Promise<void> {
    const run = await runQkms(['audit', 'verify'], this.env);
    this.figures.checked.auditVerifications++;
    if (run.code !== 0) this.fail(`round ${round}: qkms audit verify exited ${run.code}: ${run.stdout.trim()} ${run.stderr.trim()}`);
    const auditDir = path.join(this.dataDir, 'audit');
    const recorded = new Set<string>();
    for (const file of fs.readdirSync(auditDir).filter((f) => /^audit-\d+\.jsonl$/.test(f))) {
      for (const m of fs.readFileSync(path.join(auditDir, file), 'utf8').matchAll(/"requestId":"([^"]+)"/g)) recorded.add(m[1]);
    }
    const missing = this.ledger.acknowledgedRequests.filter((id) => !recorded.has(id));
    this.figures.checked.auditedAnswers += this.ledger.acknowledgedRequests.length - missing.length;
    this.figures.lost.auditRecords += missing.length;
    if (missing.length > 0) this.fail(`round ${round}: ${missing.length} acknowledged answers have no audit record, e.g. ${missing.slice(0, 3).join(', ')}`);
    this.ledger.acknowledgedRequests = [];
  }

  private sampleSecret(value: Uint8Array): void {
    // A sample keeps the suite's log scan (secrets × logs) bounded while still covering these logs.
    if (!this.isScanned || this.secretsRegistered >= 100 || Math.random() > 0.05) return;
    this.secretsRegistered++;
    registerSecret(value);
  }
}
