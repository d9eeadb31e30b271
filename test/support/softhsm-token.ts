import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findSoftHsmModule } from '../../src/hsm/pkcs11/embedded-token';
import { registerSecret } from './secrets';

export interface TestToken {
  dir: string;
  confPath: string;
  modulePath: string;
  label: string;
  pin: string;
  soPin: string;
}

/**
 * A fresh SoftHSM2 token in a temporary directory, made with softhsm2-util as an operator would.
 * SOFTHSM2_CONF is process-wide and read at C_Initialize, so it is set before any module load.
 * No shared tokens, fixed serials or slot indexes: the gateway finds the token by its label.
 */
export function createTestToken(): TestToken {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-test-'));
  const tokenDir = path.join(dir, 'tokens');
  fs.mkdirSync(tokenDir);
  const confPath = path.join(dir, 'softhsm2.conf');
  fs.writeFileSync(confPath, `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  const token = {
    dir,
    confPath,
    modulePath: findSoftHsmModule(),
    label: `gw-test-${crypto.randomBytes(4).toString('hex')}`,
    pin: crypto.randomBytes(8).toString('hex'),
    soPin: crypto.randomBytes(8).toString('hex'),
  };
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', token.label, '--pin', token.pin, '--so-pin', token.soPin], {
    env: { ...process.env, SOFTHSM2_CONF: confPath },
    stdio: 'pipe',
  });
  process.env.SOFTHSM2_CONF = confPath;
  registerSecret(token.pin);
  registerSecret(token.soPin);
  return token;
}

export function removeTestToken(token: TestToken): void {
  fs.rmSync(token.dir, { recursive: true, force: true });
}
