import type { Hsm } from '../hsm/hsm';
import { InvalidMarkerException } from '../errors/kms-errors';
import { internalKeyRef } from './key-repository';

/** The HSM key that signs pagination markers (label qkms-internal/marker-mac). */
export const MARKER_MAC_KEY = internalKeyRef('marker-mac');

/**
 * Pagination markers: base64url(8-byte position || HMAC-SHA-256 by an HSM key). Opaque to clients,
 * and a marker the gateway did not issue is InvalidMarkerException (kms-protocol.md §8).
 */
export class MarkerCodec {
  constructor(private readonly hsm: Hsm) {}

  async encode(scope: string, position: number): Promise<string> {
    const payload = Buffer.alloc(8);
    payload.writeBigUInt64BE(BigInt(position));
    const mac = await this.hsm.hmacSign(MARKER_MAC_KEY, Buffer.concat([Buffer.from(scope), payload]));
    return Buffer.concat([payload, mac]).toString('base64url');
  }

  /** `scope` ties a marker to the listing that issued it (ListKeys markers fail in ListAliases). */
  async decode(scope: string, marker: string): Promise<number> {
    const raw = /^[A-Za-z0-9_-]{54}$/.test(marker) ? Buffer.from(marker, 'base64url') : Buffer.alloc(0);
    if (raw.length !== 40) throw InvalidMarkerException.create();
    const payload = raw.subarray(0, 8);
    if (!(await this.hsm.hmacVerify(MARKER_MAC_KEY, Buffer.concat([Buffer.from(scope), payload]), raw.subarray(8)))) {
      throw InvalidMarkerException.create();
    }
    return Number(payload.readBigUInt64BE());
  }
}
