import crypto from 'node:crypto';
import { findCommand, findLibrary, missingPackages, randomLabel, run } from './common';
import { acquireMachineLock } from './machine-lock';
import type { TokenSkipped, TokenUnderTest } from './types';

/**
 * opencryptoki's soft token (IBM SoftTok). Unlike the other tokens it is machine state: one token
 * in /var/lib/opencryptoki/swtok served by the pkcsslotd daemon. Each start re-initialises it
 * (C_InitToken wipes every object) with a new label and user PIN, under a lock so two test runs on
 * one machine never wipe each other's token. The SO PIN is left at the package default: a run that
 * dies half-way must not leave a token the next run cannot re-initialise.
 */
const DEFAULT_SO_PIN = '87654321';
const SOFT_TOKEN_MODEL = 'IBM SoftTok';

export async function startOpencryptokiToken(): Promise<TokenUnderTest | TokenSkipped> {
  const modulePath = process.env.PKCS11_API ?? findLibrary(['libopencryptoki.so', 'libopencryptoki.so.0'], 'opencryptoki');
  const pkcsconf = findCommand('pkcsconf');
  const pkcsslotd = findCommand('pkcsslotd');
  const missing = [...(pkcsconf && pkcsslotd ? [] : ['opencryptoki']), ...(modulePath ? [] : ['libopencryptoki0'])];
  if (!modulePath || !pkcsconf || !pkcsslotd) return missingPackages('opencryptoki soft token', missing);

  ensureSlotDaemon(pkcsslotd);
  const release = await acquireMachineLock('opencryptoki-swtok');
  try {
    const slot = softTokenSlot(pkcsconf);
    const tokenLabel = randomLabel('qkms-ock');
    // PINs are 4 to 8 characters on this token (ulMinPinLen/ulMaxPinLen).
    const pin = crypto.randomBytes(4).toString('hex');
    run(pkcsconf, ['-c', slot, '-I', '-S', DEFAULT_SO_PIN], { input: `${tokenLabel}\n` });
    run(pkcsconf, ['-c', slot, '-u', '-S', DEFAULT_SO_PIN, '-n', pin]);
    return { kind: 'opencryptoki', modulePath, tokenLabel, pin, soPin: DEFAULT_SO_PIN, env: {}, stop: async () => release() };
  } catch (err) {
    release();
    throw err;
  }
}

/** pkcsslotd owns the shared memory every opencryptoki client attaches to: without it C_Initialize fails. */
function ensureSlotDaemon(pkcsslotd: string): void {
  if (isSlotDaemonRunning()) return;
  if (process.getuid?.() !== 0) throw new Error('opencryptoki: pkcsslotd is not running and only root can start it (systemctl start pkcsslotd)');
  run(pkcsslotd, []); // forks into the background itself
}

function isSlotDaemonRunning(): boolean {
  try {
    run('pgrep', ['-x', 'pkcsslotd']);
    return true;
  } catch {
    return false;
  }
}

/** The slot number of the soft token, from `pkcsconf -t` ("Token #3 Info:" … "Model: IBM SoftTok"). */
function softTokenSlot(pkcsconf: string): string {
  const out = run(pkcsconf, ['-t']);
  for (const block of out.split(/^Token #/m).slice(1)) {
    const slot = /^(\d+) Info:/.exec(block)?.[1];
    if (slot !== undefined && block.includes(`Model: ${SOFT_TOKEN_MODEL}`)) return slot;
  }
  throw new Error(`opencryptoki: no "${SOFT_TOKEN_MODEL}" token in pkcsconf -t (is libpkcs11_sw.so configured in /etc/opencryptoki/opencryptoki.conf?)`);
}
