import type { TokenCapabilities } from '../capabilities';
import type { HsmStats } from '../hsm';
import { HsmError, type HsmErrorKind } from '../hsm-error';
import type { Pkcs11Options, RecycleReason } from '../pkcs11/pkcs11-options';

/** What the HSM thread is started with: the PKCS#11 options without the callback (not cloneable). */
export type ThreadOptions = Omit<Pkcs11Options, 'onStateChange' | 'onRecycle'> & {
  /** How often the thread reports its stats, which is also its heartbeat to the watchdog. */
  heartbeatMs?: number;
};

/** Main → HSM thread: a call, or whether the thread may C_Finalize now (no abandoned thread is inside the module). */
export type Request = { id: number; method: string; args: unknown[] } | { mayFinalize: boolean };

/** HSM thread → main. */
export type Reply =
  | { type: 'ready'; capabilities: TokenCapabilities }
  | { type: 'state'; isUp: boolean; detail: string }
  | { type: 'recycled'; reason: RecycleReason; objects: number; ms: number }
  | { type: 'stats'; stats: HsmStats }
  | { type: 'result'; id: number; value: unknown }
  | { type: 'error'; id?: number; error: WireError };

export interface WireError {
  kind: HsmErrorKind;
  fn: string;
  ckr?: string;
  message: string;
}

export function toWire(err: unknown): WireError {
  if (err instanceof HsmError) {
    const cause = err.cause instanceof Error ? err.cause.message : undefined;
    return { kind: err.kind, fn: err.fn, ckr: err.ckr, message: cause ?? err.message };
  }
  return { kind: 'internal', fn: 'hsm-thread', message: err instanceof Error ? err.message : String(err) };
}

export function fromWire(e: WireError): HsmError {
  return new HsmError(e.kind, e.fn, e.ckr, { cause: new Error(e.message) });
}

/**
 * Structured clone turns a Buffer into a plain Uint8Array; the Hsm interface promises Buffers.
 * Results are a Buffer, an array, or an object of Buffers one level deep.
 */
export function reviveBuffers(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (Array.isArray(value)) return value.map(reviveBuffers);
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, reviveBuffers(v)]));
  }
  return value;
}
