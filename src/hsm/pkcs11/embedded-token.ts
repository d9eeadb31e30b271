import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { exclusiveFileLock } from '../../store/data-dir-lock';
import * as pkcs11js from 'pkcs11js';
import { HsmError } from '../hsm-error';
import { ckrName } from './ckr-table';
import { findSlotByLabel } from './token-access';

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

/** How long a process waits for another one that is creating the token (it takes well under a second). */
const CREATION_WAIT_MS = 30000;

interface TokenFiles {
  tokenDir: string;
  conf: string;
  pin: string;
  /** The user PIN of a token being created: on disk before the token exists, renamed to `pin` once it works. */
  pendingPin: string;
  lock: string;
}

/**
 * The default HSM: a SoftHSM2 token inside dataDir with its own softhsm2.conf. On first start it
 * initialises the token and stores a generated user PIN in dataDir/pin (mode 0600). The SO PIN is
 * generated, used once and never stored: nobody can re-initialise the token behind the gateway.
 *
 * Creation is exclusive across processes (two first starts on one empty dir made two tokens with
 * the label, one of them with a lost PIN): see withCreationLock. The pin file is written last, so
 * its presence means a finished token and needs no lock.
 *
 * SOFTHSM2_CONF is process-wide and read by C_Initialize, so it is set here, before any module load.
 */
export function ensureEmbeddedToken(dataDir: string, tokenLabel: string): EmbeddedToken {
  const modulePath = findSoftHsmModule();
  const files: TokenFiles = {
    tokenDir: path.join(dataDir, 'tokens'),
    conf: path.join(dataDir, 'softhsm2.conf'),
    pin: path.join(dataDir, 'pin'),
    pendingPin: path.join(dataDir, 'pin.pending'),
    lock: path.join(dataDir, 'tokens.lock'),
  };
  fs.mkdirSync(files.tokenDir, { recursive: true, mode: 0o700 });
  process.env.SOFTHSM2_CONF = files.conf;
  if (fs.existsSync(files.pin) && fs.existsSync(files.conf)) return { modulePath, pin: readPin(files.pin), created: false };
  return withCreationLock(files.lock, () => {
    if (!fs.existsSync(files.conf)) {
      writeDurably(files.conf, `directories.tokendir = ${files.tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
    }
    // Another process may have finished the token while this one waited for the lock.
    if (fs.existsSync(files.pin)) return { modulePath, pin: readPin(files.pin), created: false };
    return withModule(modulePath, (p11) => createToken(p11, files, tokenLabel, modulePath));
  });
}

/**
 * Runs `body` while holding an exclusive lock on `file` (exclusiveFileLock, the data-dir lock's
 * mechanism: the kernel drops it when the holder dies, so a crash leaves no stale lock), waiting
 * for the holder instead of refusing; any other failure (permissions) is thrown as it is.
 */
function withCreationLock<T>(file: string, body: () => T): T {
  const lock = exclusiveFileLock(file, CREATION_WAIT_MS);
  if (!lock) throw new HsmError('config', 'C_InitToken', undefined, { cause: new Error(`another process held ${file} (creating the embedded token) for ${CREATION_WAIT_MS / 1000} s`) });
  try {
    return body();
  } finally {
    lock.release();
  }
}

function createToken(p11: pkcs11js.PKCS11, files: TokenFiles, tokenLabel: string, modulePath: string): EmbeddedToken {
  const existing = slotLabelled(p11, tokenLabel);
  if (existing !== undefined) return { modulePath, pin: completeInterrupted(p11, existing, files, tokenLabel), created: false };
  const pin = crypto.randomBytes(18).toString('base64url');
  const soPin = crypto.randomBytes(18).toString('base64url');
  // On disk before the token exists, so that a creation interrupted after C_InitPIN can be completed.
  writeDurably(files.pendingPin, pin);
  const free = p11.C_GetSlotList(true).find((s) => (p11.C_GetTokenInfo(s).flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0);
  if (free === undefined) throw new HsmError('config', 'C_InitToken', undefined, { cause: new Error('SoftHSM2 offers no free slot') });
  p11.C_InitToken(free, soPin, tokenLabel.padEnd(32, ' '));
  const session = p11.C_OpenSession(findSlotByLabel(p11, tokenLabel), pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  p11.C_Login(session, pkcs11js.CKU_SO, soPin);
  p11.C_InitPIN(session, pin);
  p11.C_Logout(session);
  p11.C_CloseSession(session);
  fs.renameSync(files.pendingPin, files.pin); // the token is finished: from now on no lock is needed
  return { modulePath, pin, created: true };
}

/**
 * A token with the label but no pin file: a first start died while creating it. If its pending
 * PIN logs in, the creation is completed; otherwise (it died before C_InitPIN) the PIN is lost.
 * Such a token never had a pin file, so no process could log in and it holds no keys.
 */
function completeInterrupted(p11: pkcs11js.PKCS11, slot: pkcs11js.Handle, files: TokenFiles, tokenLabel: string): string {
  const pin = fs.existsSync(files.pendingPin) ? readPin(files.pendingPin) : undefined;
  if (pin !== undefined && canLogIn(p11, slot, pin)) {
    fs.renameSync(files.pendingPin, files.pin);
    return pin;
  }
  const why = `the token '${tokenLabel}' in ${files.tokenDir} was left unfinished by an interrupted first start and its PIN is lost; ` +
    `it holds no keys: remove ${files.tokenDir} and ${files.pendingPin}, then start again`;
  throw new HsmError('config', 'C_Login', undefined, { cause: new Error(why) });
}

function canLogIn(p11: pkcs11js.PKCS11, slot: pkcs11js.Handle, pin: string): boolean {
  const session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
  try {
    p11.C_Login(session, pkcs11js.CKU_USER, pin);
    p11.C_Logout(session);
    return true;
  } catch (err) {
    if (['CKR_PIN_INCORRECT', 'CKR_USER_PIN_NOT_INITIALIZED'].includes(ckrName(err) ?? '')) return false;
    throw err;
  } finally {
    p11.C_CloseSession(session);
  }
}

function slotLabelled(p11: pkcs11js.PKCS11, label: string): pkcs11js.Handle | undefined {
  return p11.C_GetSlotList(true).find((s) => {
    const info = p11.C_GetTokenInfo(s);
    return (info.flags & pkcs11js.CKF_TOKEN_INITIALIZED) !== 0 && info.label.trim() === label;
  });
}

function withModule<T>(modulePath: string, body: (p11: pkcs11js.PKCS11) => T): T {
  const p11 = new pkcs11js.PKCS11();
  p11.load(modulePath);
  p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  try {
    return body(p11);
  } finally {
    p11.C_Finalize();
    p11.close();
  }
}

const readPin = (file: string) => fs.readFileSync(file, 'utf8').trim();

/** Whole or absent after a crash: a temporary file, flushed, then renamed over the name. */
function writeDurably(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
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
