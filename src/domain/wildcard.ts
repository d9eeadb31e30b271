/** A compiled IAM wildcard pattern. */
export type Matcher = (value: string) => boolean;

/** Stands for `?` in a compiled segment: no code point string equals it. */
const ANY = '';

/**
 * IAM wildcards (Action, Resource, StringLike): `*` matches any run of characters, none too; `?`
 * exactly one; everything else itself. Actions compare case-insensitively.
 *
 * Compiled once per pattern, never to a RegExp: V8 backtracks, and `*-*-*-*-*-prod` against a few
 * hundred dashes took seconds on the event loop. Here the pattern is split at its stars into
 * segments: the first must be a prefix, the last a suffix, and each one between is taken at its
 * leftmost occurrence after the previous one — which is exact, because a star absorbs whatever lies
 * between. Each occurrence is found with a bit-parallel shift-and scan, so a match costs
 * O(value length × (1 + longest segment / 32)) and never backtracks.
 */
export function compileWildcard(pattern: string, options: { ignoreCase?: boolean } = {}): Matcher {
  const fold = options.ignoreCase ? (s: string) => s.toLowerCase() : (s: string) => s;
  const segments = fold(pattern).split('*').map((s) => Array.from(s, (c) => (c === '?' ? ANY : c)));
  const first = segments[0];
  if (segments.length === 1) return (value) => matchesWhole(first, Array.from(fold(value)));
  const last = segments[segments.length - 1];
  const middle = segments.slice(1, -1).filter((s) => s.length > 0).map(scanner);
  return (value) => {
    const chars = Array.from(fold(value));
    const end = chars.length - last.length;
    if (end < first.length || !matchesAt(first, chars, 0) || !matchesAt(last, chars, end)) return false;
    let from = first.length;
    for (const find of middle) {
      const at = find(chars, from, end);
      if (at < 0) return false;
      from = at;
    }
    return true;
  };
}

function matchesWhole(segment: string[], chars: string[]): boolean {
  return segment.length === chars.length && matchesAt(segment, chars, 0);
}

function matchesAt(segment: string[], chars: string[], at: number): boolean {
  for (let i = 0; i < segment.length; i++) if (segment[i] !== ANY && segment[i] !== chars[at + i]) return false;
  return true;
}

/**
 * Shift-and over `words` 32-bit words: bit i of the state says "the segment's first i+1
 * characters end here". Returns a function giving the end (exclusive) of the segment's leftmost
 * occurrence within chars[from, to), or -1.
 */
function scanner(segment: string[]): (chars: string[], from: number, to: number) => number {
  const words = Math.ceil(segment.length / 32);
  const anyMask = new Uint32Array(words);
  segment.forEach((c, i) => c === ANY && (anyMask[i >>> 5] |= 1 << (i & 31)));
  const masks = new Map<string, Uint32Array>();
  segment.forEach((c, i) => {
    if (c === ANY) return;
    let m = masks.get(c);
    if (!m) masks.set(c, (m = anyMask.slice()));
    m[i >>> 5] |= 1 << (i & 31);
  });
  const top = segment.length - 1;
  const topWord = top >>> 5;
  const topBit = 1 << (top & 31);
  return (chars, from, to) => {
    const state = new Uint32Array(words);
    for (let j = from; j < to; j++) {
      const mask = masks.get(chars[j]) ?? anyMask;
      let carry = 1;
      for (let w = 0; w < words; w++) {
        const next = state[w] >>> 31;
        state[w] = ((state[w] << 1) | carry) & mask[w];
        carry = next;
      }
      if (state[topWord] & topBit) return j + 1;
    }
    return -1;
  };
}
