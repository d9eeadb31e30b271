/**
 * The GenerateDataKey HSM sequence (generate, read, KWP wrap, destroy, HMAC) timed three ways, in
 * one process on one token, for issue #5's "sync vs async vs worker threads" question:
 *   sync    Pkcs11Hsm on the calling thread (blocks the event loop for the whole sequence);
 *   async   pkcs11js's …Async variants on the libuv pool, one session per concurrent loop (Init,
 *           GetAttributeValue and DestroyObject have no async form and still block);
 *   thread  HsmThread, the gateway's default (QKMS_HSM_THREAD=true): the calling loop never blocks.
 */
import * as pkcs11js from 'pkcs11js';
import { Envelope, envelopeModes } from '../src/domain/envelope';
import { encodeEncryptionContext } from '../src/domain/encryption-context';
import type { KeyMaterial } from '../src/domain/key-repository';
import type { Hsm } from '../src/hsm/hsm';
import { HMAC_SHA256, GENERIC_SECRET_KEY_GEN } from '../src/hsm/pkcs11/mechanisms';
/** SoftHSM2's RFC 5649 wrap (capability discovery picks this number there). */
const KWP = { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD };
import { ephemeralDataKeyTemplate } from '../src/hsm/pkcs11/templates';

export interface ModeResult {
  mode: string;
  concurrency: number;
  opsPerSecond: number;
  /** Longest the calling event loop went without a turn (setImmediate lag), ms: the longest stretch of PKCS#11 work on it. */
  maxLoopStallMs: number;
  /** RSS growth over the run, bytes per operation (the async key calls leak ~250 B each, §1.5). */
  rssBytesPerOp: number;
}

/** Runs `op` in `concurrency` loops for `ms`, measuring throughput, event-loop stalls and RSS growth. */
export async function timeMode(mode: string, concurrency: number, ms: number, op: (loop: number) => Promise<unknown>): Promise<ModeResult> {
  let maxStall = 0;
  let last = performance.now();
  let ticking = true;
  const tick = () => {
    const now = performance.now();
    maxStall = Math.max(maxStall, now - last);
    last = now;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  const rss0 = process.memoryUsage.rss();
  let n = 0;
  const end = performance.now() + ms;
  await Promise.all(Array.from({ length: concurrency }, async (_, loop) => {
    while (performance.now() < end) {
      await op(loop);
      n++;
      await new Promise((r) => setImmediate(r)); // let the loop turn between operations, as a server's would
    }
  }));
  ticking = false;
  return { mode, concurrency, opsPerSecond: Math.round(n / (ms / 1000)), maxLoopStallMs: Math.round(maxStall * 10) / 10, rssBytesPerOp: Math.round((process.memoryUsage.rss() - rss0) / n) };
}

/** The sequence through an Hsm (sync Pkcs11Hsm or HsmThread): exactly what GenerateDataKey runs. */
export function envelopeOp(hsm: Hsm, material: KeyMaterial): () => Promise<unknown> {
  const envelope = new Envelope(hsm, envelopeModes(hsm.capabilities(), 'AES_KWP_HMAC'));
  const context = encodeEncryptionContext({}, 8192);
  return () => envelope.sealNewDataKey(material, 32, context);
}

/**
 * The same PKCS#11 calls with pkcs11js's async forms, on its own module handle over the already
 * initialised and logged-in token (C_Initialize/C_Login answer "already", as for any second user).
 */
export function openAsyncMode(modulePath: string, slotLabel: string, material: KeyMaterial, sessions: number): { op: (loop: number) => Promise<unknown>; close(): void } {
  const p11 = new pkcs11js.PKCS11();
  p11.load(modulePath);
  try {
    p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch {
    // CKR_CRYPTOKI_ALREADY_INITIALIZED: the floor's Pkcs11Hsm initialised the process
  }
  const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === slotLabel)!;
  const pool = Array.from({ length: sessions }, () => p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION));
  const find = (id: string) => {
    p11.C_FindObjectsInit(pool[0], [{ type: pkcs11js.CKA_ID, value: Buffer.from(id, 'hex') }]);
    const h = p11.C_FindObjects(pool[0]);
    p11.C_FindObjectsFinal(pool[0]);
    return h!;
  };
  const kek = find(material.objects.kek.id);
  const mac = find(material.objects.mac.id);
  // Untyped at runtime: pkcs11js promisifies the callback forms of GenerateKey and WrapKey too.
  const a = p11 as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const op = async (loop: number) => {
    const s = pool[loop % pool.length];
    const dataKey = (await a.C_GenerateKeyAsync(s, GENERIC_SECRET_KEY_GEN, ephemeralDataKeyTemplate(32))) as pkcs11js.Handle;
    try {
      p11.C_GetAttributeValue(s, dataKey, [{ type: pkcs11js.CKA_VALUE }]);
      const wrapped = (await a.C_WrapKeyAsync(s, KWP, kek, dataKey, Buffer.alloc(64))) as Buffer;
      p11.C_SignInit(s, HMAC_SHA256, mac);
      await p11.C_SignAsync(s, wrapped, Buffer.alloc(32));
    } finally {
      p11.C_DestroyObject(s, dataKey);
    }
  };
  return {
    op,
    close() {
      for (const s of pool) p11.C_CloseSession(s);
    },
  };
}
