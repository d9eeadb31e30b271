import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import * as pkcs11js from 'pkcs11js';

/**
 * Fault injection at the PKCS#11 boundary, for tests and drills, enabled only by QKMS_FAULTS_FILE:
 *   [ { "function": "C_WrapKey" | "*", "ckr": "CKR_DEVICE_ERROR", "delayMs": 0, "probability": 1, "count": 3, "skip": 0, "after": false } ]
 * A rule with `"after": true` holds a call after it returned, before its caller sees the result
 * (the object a C_GenerateKey made exists; the caller has not recorded it): the crash drills
 * SIGKILL the gateway there. Each hold is announced on stderr ("fault injection: holding …") so a
 * drill knows when to strike.
 * The first `skip` matching calls pass untouched (to fail a call after start-up made its own). A
 * matching call first blocks for delayMs. A delay of HUNG_CALL_MS or more is a call hung in the
 * module: it blocks in native code, which not even worker.terminate() ends, so an abandoned HSM
 * thread stays until the delay is over. A shorter one is a slow device (a network HSM's round
 * trip): the thread waits without using the CPU, so many threads can wait at once, as they would
 * on a network HSM. (For a pkcs11js *Async function the delay is returned to the caller, which
 * holds the call back without blocking the thread.) Then the call fails with the
 * CKR code the way pkcs11js does (`Error("CKR_NAME:<rv>")`), with `probability`, at most `count`
 * times. The file is re-read when it changes (at most once a second); an unreadable file means no
 * faults. Everything above this layer — classification, recovery, timeouts — runs for real.
 */
interface FaultRule {
  function: string;
  ckr?: string;
  delayMs?: number;
  probability?: number;
  count?: number;
  skip?: number;
  after?: boolean;
}

export class FaultPlan {
  private rules: FaultRule[] = [];
  private stamp = '';
  private checkedAt = 0;

  constructor(private readonly file: string) {}

  /**
   * Called before every C_* call, and after it returned (`after`); throws or blocks as the plan
   * says. Returns the delay an *Async call must take.
   */
  apply(fn: string, after = false): number {
    this.reload();
    for (const rule of this.rules) {
      if (rule.function !== '*' && rule.function !== fn) continue;
      if ((rule.after ?? false) !== after) continue;
      if (rule.skip) {
        rule.skip--;
        continue;
      }
      if (rule.count !== undefined && rule.count <= 0) continue;
      if (Math.random() >= (rule.probability ?? 1)) continue;
      if (rule.count !== undefined) rule.count--;
      const isAsync = fn.endsWith('Async');
      const delayMs = rule.delayMs ?? 0;
      // A hold a drill waits for is announced; a slow device's every call is not (thousands a second).
      if (delayMs >= HUNG_CALL_MS) process.stderr.write(`${JSON.stringify({ level: 'warn', message: `fault injection: holding ${fn} ${after ? 'after' : 'before'} the call for ${delayMs} ms` })}\n`);
      if (delayMs >= HUNG_CALL_MS && !isAsync) blockInNativeCode(delayMs);
      else if (delayMs > 0 && !isAsync) Atomics.wait(sleeper, 0, 0, delayMs);
      if (rule.ckr) {
        const rv = (pkcs11js as unknown as Record<string, number>)[rule.ckr] ?? 5;
        throw new Error(`${rule.ckr}:${rv}`);
      }
      return isAsync ? (rule.delayMs ?? 0) : 0;
    }
    return 0;
  }

  private reload(): void {
    const now = Date.now();
    if (now - this.checkedAt < 1000) return;
    this.checkedAt = now;
    try {
      const st = fs.statSync(this.file);
      const stamp = `${st.mtimeMs}:${st.size}`;
      if (stamp === this.stamp) return;
      this.stamp = stamp;
      const parsed: unknown = JSON.parse(fs.readFileSync(this.file, 'utf8'));
      this.rules = Array.isArray(parsed) ? (parsed as FaultRule[]) : [];
    } catch {
      this.rules = [];
      this.stamp = '';
    }
  }
}

/** A delay this long or longer stands for a call hung in the module; a shorter one for a slow device. */
const HUNG_CALL_MS = 50;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * Blocks this thread for `ms` outside JavaScript. Atomics.wait would be simpler, but
 * worker.terminate() interrupts it, so an abandoned thread would leave at once, which a thread
 * stuck in a PKCS#11 call never does. spawnSync waits in native code; it costs a process start
 * (about 1.5 ms) per delayed call, which drills can afford.
 */
function blockInNativeCode(ms: number): void {
  spawnSync('sleep', [(ms / 1000).toFixed(3)]);
}
