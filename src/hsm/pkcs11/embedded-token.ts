import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as pkcs11js from 'pkcs11js';
import { HsmError } from '../hsm-error';
import { findSlotByLabel } from './pkcs11-hsm';

/** Where Debian/Ubuntu (package libsofthsm2) and source builds put the SoftHSM2 module. */
const SOFTHSM_MODULE_CANDIDATES = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
];

export function findSoftHsmModule(): string {
  const found = SOFTHSM_MODULE_CANDIDATES.find((p) => fs.existsSync(p));
  if (!found) {
    throw new HsmError('config', 'C_Load', undefined, {
      cause: new Error('SoftHSM2 is not installed: install the Debian/Ubuntu package softhsm2 (apt-get install -y softhsm2)'),
    });
  }
  return found;
}

export interface EmbeddedToken {
  modulePath: string;
  pin: string;
  created: boolean;
}

/**
 * The default HSM: a SoftHSM2 token inside dataDir with its own softhsm2.conf. On first start it
 * initialises the token and stores a generated user PIN in dataDir/pin (mode 0600). The SO PIN is
 * generated, used once and never stored: nobody can re-initialise the token behind the gateway.
 *
 * SOFTHSM2_CONF is process-wide and read by C_Initialize, so it is set here, before any module load.
 */
export function ensureEmbeddedToken(dataDir: string, tokenLabel: string): EmbeddedToken {
  const modulePath = findSoftHsmModule();
  const tokenDir = path.join(dataDir, 'tokens');
  const confPath = path.join(dataDir, 'softhsm2.conf');
  const pinPath = path.join(dataDir, 'pin');
  fs.mkdirSync(tokenDir, { recursive: true, mode: 0o700 });
  if (!fs.existsSync(confPath)) {
    fs.writeFileSync(confPath, `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`, { mode: 0o600 });
  }
  process.env.SOFTHSM2_CONF = confPath;

  if (fs.existsSync(pinPath)) {
    return { modulePath, pin: fs.readFileSync(pinPath, 'utf8').trim(), created: false };
  }
  const pin = crypto.randomBytes(18).toString('base64url');
  const soPin = crypto.randomBytes(18).toString('base64url');
  const p11 = new pkcs11js.PKCS11();
  p11.load(modulePath);
  p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  try {
    const free = p11.C_GetSlotList(true).find((s) => (p11.C_GetTokenInfo(s).flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0);
    if (!free) throw new HsmError('config', 'C_InitToken', undefined, { cause: new Error('SoftHSM2 offers no free slot') });
    p11.C_InitToken(free, soPin, tokenLabel.padEnd(32, ' '));
    const slot = findSlotByLabel(p11, tokenLabel);
    const session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    p11.C_Login(session, pkcs11js.CKU_SO, soPin);
    p11.C_InitPIN(session, pin);
    p11.C_Logout(session);
    p11.C_CloseSession(session);
    // Written only once the token accepts it, via rename so a crash never leaves half a PIN.
    fs.writeFileSync(`${pinPath}.tmp`, pin, { mode: 0o600 });
    fs.renameSync(`${pinPath}.tmp`, pinPath);
  } finally {
    p11.C_Finalize();
    p11.close();
  }
  return { modulePath, pin, created: true };
}

/**
 * The module of an existing embedded token, with SOFTHSM2_CONF pointed at it, for readers that must
 * not create one (qkms slots); undefined when dataDir holds no embedded token yet.
 */
export function existingEmbeddedModule(dataDir: string): string | undefined {
  const confPath = path.join(dataDir, 'softhsm2.conf');
  if (!fs.existsSync(confPath)) return undefined;
  process.env.SOFTHSM2_CONF = confPath;
  return findSoftHsmModule();
}
