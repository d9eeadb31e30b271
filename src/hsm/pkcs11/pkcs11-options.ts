import type { TokenCapabilities } from '../capabilities';
import type { IntegrityErrors } from '../profiles';
import type { ModuleLockShare } from './module-lock';

/** Why the module was re-initialised: to free session objects, or to re-read the token's objects. */
export type RecycleReason = 'session-objects' | 'token-index';

/** How Pkcs11Hsm reaches and treats a token (from the configuration and the HSM profile). */
export interface Pkcs11Options {
  modulePath: string;
  tokenLabel: string;
  pin: string;
  sessions: number;
  /** QKMS_PKCS11_INIT_ARGS: the init string for C_Initialize (token-access.ts initialize). */
  initArgs?: string;
  /** QKMS_FAULTS_FILE: scripted PKCS#11 failures for tests and drills (faults.ts). */
  faultsFile?: string;
  /** Who makes AES-GCM IVs (profiles.ts); default 'caller'. */
  gcmIv?: 'caller' | 'hsm';
  /** The profile's CKR codes that mean "the input does not verify", by function (profiles.ts). */
  integrityErrors?: IntegrityErrors;
  /**
   * After this many session objects (ephemeral data keys), finalise and re-initialise the module
   * between two calls: SoftHSM2 keeps every session object it ever made until C_Finalize
   * (profiles.ts). Unset: never.
   */
  recycleAfterSessionObjects?: number;
  /** The profile's staleIndexAfterOwnWrite (profiles.ts). */
  staleIndexAfterOwnWrite?: boolean;
  /** Told of a recycle: why, session objects released, pause in ms. */
  onRecycle?: (reason: RecycleReason, objects: number, ms: number) => void;
  /**
   * False while another thread may be inside the module (a stuck HSM thread that was abandoned;
   * another user of the module in this process): then nothing here calls C_Finalize or unloads the
   * module. Recovery reopens sessions and logs in again instead, a due recycle waits, and close()
   * only closes this instance's sessions. Changed later with setMayFinalize. Default true.
   */
  mayFinalize?: boolean;
  /**
   * This thread's share of the lock every thread of the process in the module holds
   * (module-lock.ts). Unset: a lock of its own, for a module only this instance uses.
   */
  moduleLock?: ModuleLockShare;
  /**
   * What the token can do, when already found (a replacement HSM thread is given its
   * predecessor's): open() then skips capability discovery.
   */
  capabilities?: TokenCapabilities;
  /** Told when the token goes down (circuit open) and comes back. */
  onStateChange?: (isUp: boolean, detail: string) => void;
}
