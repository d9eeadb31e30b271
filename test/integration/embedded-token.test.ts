import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findSoftHsmModule } from '../../src/hsm/pkcs11/embedded-token';
import { registerSecret } from '../support/secrets';

const EMBEDDED_TOKEN_MODULE = path.resolve(__dirname, '../../src/hsm/pkcs11/embedded-token.ts');

interface ChildResult {
  created?: boolean;
  error?: string;
  /** How many initialised tokens carry the label, and whether the pin file's PIN logs in to it. */
  tokensWithLabel?: number;
  canLogIn?: boolean;
}

/**
 * ensureEmbeddedToken in its own process (SoftHSM2 reads SOFTHSM2_CONF once per process), starting
 * at `startAt` so that two of them race; then, as a separate module instance, counts the tokens
 * with the label and logs in with the PIN the pin file holds.
 */
function ensureInChild(dataDir: string, startAt: number): Promise<ChildResult> {
  const script = `
const pkcs11js = require('pkcs11js');
const fs = require('node:fs');
const { ensureEmbeddedToken } = require(${JSON.stringify(EMBEDDED_TOKEN_MODULE)});
const dir = ${JSON.stringify(dataDir)};
while (Date.now() < ${startAt});
let out;
try {
  const { modulePath, created } = ensureEmbeddedToken(dir, 'qkms');
  const p11 = new pkcs11js.PKCS11();
  p11.load(modulePath);
  p11.C_Initialize();
  const slots = p11.C_GetSlotList(true).filter((s) => p11.C_GetTokenInfo(s).label.trim() === 'qkms');
  const session = p11.C_OpenSession(slots[0], pkcs11js.CKF_SERIAL_SESSION);
  let canLogIn = true;
  try { p11.C_Login(session, pkcs11js.CKU_USER, fs.readFileSync(dir + '/pin', 'utf8')); } catch { canLogIn = false; }
  p11.C_Finalize();
  out = { created, tokensWithLabel: slots.length, canLogIn };
} catch (err) {
  out = { error: String(err && err.cause ? err.cause.message : err) };
}
process.stdout.write(JSON.stringify(out));`;
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('QKMS_') && k !== 'SOFTHSM2_CONF'));
  const child = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), '-e', script], { env: clean });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(stdout) as ChildResult) : reject(new Error(`child exited ${code}: ${stderr}`))));
  });
}

function softhsmUtil(dataDir: string, ...args: string[]): string {
  return execFileSync('softhsm2-util', args, { env: { ...process.env, SOFTHSM2_CONF: path.join(dataDir, 'softhsm2.conf') }, stdio: 'pipe' }).toString();
}

describe('The embedded SoftHSM2 token', function () {
  this.timeout(60000);
  let dataDir: string;
  beforeEach(() => (dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-embedded-'))));
  afterEach(() => {
    if (fs.existsSync(path.join(dataDir, 'pin'))) registerSecret(fs.readFileSync(path.join(dataDir, 'pin'), 'utf8'));
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('is created exactly once when two processes start on one empty data dir at the same moment', async () => {
    for (let round = 0; round < 5; round++) {
      fs.rmSync(dataDir, { recursive: true, force: true });
      fs.mkdirSync(dataDir);
      const startAt = Date.now() + 2500; // past both children's start-up
      const results = await Promise.all([ensureInChild(dataDir, startAt), ensureInChild(dataDir, startAt)]);
      for (const r of results) assert.deepEqual({ ...r, created: undefined }, { created: undefined, tokensWithLabel: 1, canLogIn: true }, `round ${round}: ${JSON.stringify(results)}`);
      assert.deepEqual(results.map((r) => r.created).sort(), [false, true], `round ${round}: one created it, the other reused it`);
      assert.equal(softhsmUtil(dataDir, '--show-slots').match(/Label:\s+qkms\s*$/gm)?.length, 1, `round ${round}: one token labelled qkms`);
    }
  });

  it('completes a creation that was interrupted after the PIN was set, and reports one interrupted before, instead of making a second token', async () => {
    assert.equal((await ensureInChild(dataDir, 0)).created, true);
    // As a crash right before the pin file's rename leaves it.
    fs.renameSync(path.join(dataDir, 'pin'), path.join(dataDir, 'pin.pending'));
    const completed = await ensureInChild(dataDir, 0);
    assert.deepEqual(completed, { created: false, tokensWithLabel: 1, canLogIn: true });
    assert.ok(!fs.existsSync(path.join(dataDir, 'pin.pending')));

    // As a crash right after C_InitToken leaves it: a labelled token whose user PIN was never set.
    fs.rmSync(path.join(dataDir, 'tokens'), { recursive: true });
    fs.mkdirSync(path.join(dataDir, 'tokens'));
    fs.renameSync(path.join(dataDir, 'pin'), path.join(dataDir, 'pin.pending'));
    // pkcs11-tool --init-token without --init-pin: C_InitToken only ("User PIN init.: no").
    execFileSync('pkcs11-tool', ['--module', findSoftHsmModule(), '--init-token', '--label', 'qkms', '--so-pin', 'so-pin-of-the-crashed-start'], {
      env: { ...process.env, SOFTHSM2_CONF: path.join(dataDir, 'softhsm2.conf') },
      stdio: 'pipe',
    });
    assert.match(softhsmUtil(dataDir, '--show-slots'), /User PIN init\.:\s+no/);
    const lost = await ensureInChild(dataDir, 0);
    assert.match(lost.error ?? '', /left unfinished by an interrupted first start and its PIN is lost; it holds no keys: remove .*tokens/);
    assert.equal(softhsmUtil(dataDir, '--show-slots').match(/Label:\s+qkms\s*$/gm)?.length, 1, 'no second token');
  });
});
