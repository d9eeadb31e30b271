/**
 * The few DER structures the PKCS#11 layer converts: ECDSA signatures (PKCS#11 CKM_ECDSA gives raw
 * r‖s, KMS and every X.509 verifier use the X9.62 SEQUENCE { INTEGER r, INTEGER s }), and the
 * OCTET STRING around CKA_EC_POINT. Lengths above 127 use the long form; nothing else is accepted.
 */

function encodeLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes = Buffer.from(n.toString(16).padStart(n > 0xff ? 4 : 2, '0'), 'hex');
  return Buffer.concat([Buffer.from([0x80 | bytes.length]), bytes]);
}

function tlv(tag: number, value: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(value.length), value]);
}

/** Reads one TLV at `offset` with the expected tag; undefined when malformed. */
function readTlv(buf: Buffer, offset: number, tag: number): { value: Buffer; end: number } | undefined {
  if (offset + 2 > buf.length || buf[offset] !== tag) return undefined;
  let len = buf[offset + 1];
  let start = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 2 || start + n > buf.length) return undefined;
    len = buf.subarray(start, start + n).reduce((a, b) => a * 256 + b, 0);
    if (len < 0x80) return undefined; // not minimal
    start += n;
  }
  if (start + len > buf.length) return undefined;
  return { value: buf.subarray(start, start + len), end: start + len };
}

/** A non-negative big-endian integer as a minimal DER INTEGER body. */
function integerBody(unsigned: Buffer): Buffer {
  let i = 0;
  while (i < unsigned.length - 1 && unsigned[i] === 0) i++;
  const trimmed = unsigned.subarray(i);
  return trimmed[0] & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed;
}

/** raw r‖s (each `r.length / 2` bytes) → DER ECDSA-Sig-Value. */
export function ecdsaRawToDer(raw: Buffer): Buffer {
  const half = raw.length / 2;
  return tlv(0x30, Buffer.concat([tlv(0x02, integerBody(raw.subarray(0, half))), tlv(0x02, integerBody(raw.subarray(half)))]));
}

/** DER ECDSA-Sig-Value → raw r‖s with each integer left-padded to `fieldBytes`; undefined if malformed. */
export function ecdsaDerToRaw(der: Buffer, fieldBytes: number): Buffer | undefined {
  const seq = readTlv(der, 0, 0x30);
  if (!seq || seq.end !== der.length) return undefined;
  const r = readTlv(seq.value, 0, 0x02);
  const s = r && readTlv(seq.value, r.end, 0x02);
  if (!r || !s || s.end !== seq.value.length) return undefined;
  const parts: Buffer[] = [];
  for (const int of [r.value, s.value]) {
    if (int.length === 0 || int[0] & 0x80) return undefined; // negative or empty
    if (int.length > 1 && int[0] === 0 && !(int[1] & 0x80)) return undefined; // not minimal
    const unsigned = int[0] === 0 ? int.subarray(1) : int;
    if (unsigned.length > fieldBytes) return undefined;
    parts.push(Buffer.concat([Buffer.alloc(fieldBytes - unsigned.length), unsigned]));
  }
  return Buffer.concat(parts);
}

/** An Ed25519 CKA_EC_POINT: DER OCTET STRING of the 32-byte key (SoftHSM2), or the bare key. */
export function edwardsPoint(attribute: Buffer): Buffer {
  const inner = readTlv(attribute, 0, 0x04);
  return inner && inner.end === attribute.length && inner.value.length === 32 ? inner.value : attribute;
}

/** CKA_EC_POINT is DER OCTET STRING(04 ‖ X ‖ Y) per PKCS#11 v2.40; some tokens give the bare point. */
export function unwrapEcPoint(attribute: Buffer): Buffer {
  const inner = readTlv(attribute, 0, 0x04);
  return inner && inner.end === attribute.length && inner.value[0] === 0x04 ? inner.value : attribute;
}

/** CKA_EC_POINT as PKCS#11 v2.40 wants it on a public key object made with C_CreateObject: DER OCTET STRING(04 ‖ X ‖ Y). */
export function encodeOctetString(value: Buffer): Buffer {
  return tlv(0x04, value);
}
