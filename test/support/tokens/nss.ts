import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { registerSecret } from '../secrets';
import { findCommand, findLibrary, missingPackages, randomLabel, run } from './common';
import type { TokenSkipped, TokenUnderTest } from './types';

/**
 * NSS softoken over a fresh key database in a temp dir, loaded directly (not through p11-kit,
 * which changes what the token accepts). The softoken cannot start without its init string: it
 * is what C_Initialize's pReserved carries (pkcs11js `libraryParameters`). `dbTokenDescription`
 * names the database token, which otherwise is "NSS Certificate DB" in every NSS database.
 */
export async function startNssToken(): Promise<TokenUnderTest | TokenSkipped> {
  const modulePath = findLibrary(['libsoftokn3.so', 'nss/libsoftokn3.so']);
  const certutil = findCommand('certutil');
  const missing = [...(modulePath ? [] : ['libnss3']), ...(certutil ? [] : ['libnss3-tools'])];
  if (!modulePath || !certutil) return missingPackages('NSS softoken', missing);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-nss-'));
  const pin = crypto.randomBytes(12).toString('hex');
  registerSecret(pin);
  const pinFile = path.join(dir, 'pin.txt');
  fs.writeFileSync(pinFile, `${pin}\n`, { mode: 0o600 });
  try {
    run(certutil, ['-N', '-d', `sql:${dir}`, '-f', pinFile]);
  } finally {
    fs.rmSync(pinFile, { force: true });
  }
  const tokenLabel = randomLabel('qkms-nss');
  return {
    kind: 'nss',
    modulePath,
    tokenLabel,
    pin,
    // The key database has one password, which is both the user PIN and what NSS calls the SO PIN.
    soPin: pin,
    initArgs: `configdir='sql:${dir}' certPrefix='' keyPrefix='' secmod='secmod.db' dbTokenDescription='${tokenLabel}' flags=`,
    env: {},
    stop: async () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
