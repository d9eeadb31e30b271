import { ValidationException } from '../errors/kms-errors';

export type EncryptionContext = Record<string, string>;

/**
 * The encryption context as unambiguous bytes, bound as AAD / under the blob MAC:
 *
 *   uint32 BE  pair count
 *   per pair, sorted by the UTF-8 bytes of the key:
 *     uint32 BE  key length   | key bytes (UTF-8)
 *     uint32 BE  value length | value bytes (UTF-8)
 *
 * Every field is length-prefixed, so {"ab":"c"} and {"a":"bc"} differ; the order of members in the
 * request does not matter (KMS matches contexts as sets). An empty context is the 4 bytes 00000000,
 * so AAD is never empty (SoftHSM #664).
 */
export function encodeEncryptionContext(context: EncryptionContext | undefined, maxBytes: number): Buffer {
  const pairs = Object.entries(context ?? {}).map(([k, v]) => {
    // A lone surrogate would become U+FFFD in UTF-8 and collide with a real U+FFFD.
    if (!k.isWellFormed() || !v.isWellFormed()) {
      throw new ValidationException('Encryption context keys and values must be well-formed Unicode strings.');
    }
    return [Buffer.from(k, 'utf8'), Buffer.from(v, 'utf8')] as const;
  });
  pairs.sort((a, b) => Buffer.compare(a[0], b[0]));
  const size = 4 + pairs.reduce((n, [k, v]) => n + 8 + k.length + v.length, 0);
  if (size > maxBytes) {
    throw new ValidationException(`Encryption context is too large: ${size} bytes encoded, the limit is ${maxBytes}.`);
  }
  const out = Buffer.alloc(size);
  let o = out.writeUInt32BE(pairs.length, 0);
  for (const [k, v] of pairs) {
    o = out.writeUInt32BE(k.length, o);
    o += k.copy(out, o);
    o = out.writeUInt32BE(v.length, o);
    o += v.copy(out, o);
  }
  return out;
}
