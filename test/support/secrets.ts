/**
 * What the integration suite must never find in a log: every plaintext and data key that crossed
 * the wire (recorded from responses by the clients' middleware), every secret access key and PIN
 * (registered where the tests make them), checked against every log line and audit file the
 * gateways wrote (test/integration/zz-log-scan.test.ts, which runs last).
 */
const secrets = new Set<string>();
const logs: string[] = [];

/** Values shorter than this are skipped: a 1-byte data key's base64 would match by chance. */
const MIN_SCAN_CHARS = 16;

export function registerSecret(value: string | Uint8Array): void {
  const forms = typeof value === 'string' ? [value] : [Buffer.from(value).toString('base64'), Buffer.from(value).toString('hex')];
  for (const f of forms) if (f.length >= MIN_SCAN_CHARS) secrets.add(f);
}

export function recordLog(text: string): void {
  logs.push(text);
}

export function registeredSecrets(): string[] {
  return [...secrets];
}

export function recordedLogs(): string {
  return logs.join('\n');
}

/**
 * The secrets that occur in text, in one pass over it: a rolling hash of every MIN_SCAN_CHARS-long
 * window is looked up among the hashes of the secrets' first MIN_SCAN_CHARS characters, and only
 * a hit is compared in full. `secrets.filter((s) => text.includes(s))` costs secrets × text, which
 * at the whole suite's size (tens of thousands of secrets, hundreds of megabytes of logs) ran past
 * the test's timeout.
 */
export function secretsFoundIn(text: string, candidates: string[]): string[] {
  const byPrefixHash = new Map<number, string[]>();
  const seen = new Uint8Array(1 << 21); // a 2^24-bit filter in front of the map: most windows miss it
  for (const s of candidates) {
    const h = windowHash(s, 0);
    seen[h >>> 11] |= 1 << (h & 7);
    const list = byPrefixHash.get(h);
    if (list) list.push(s);
    else byPrefixHash.set(h, [s]);
  }
  const found = new Set<string>();
  if (text.length < MIN_SCAN_CHARS) return [];
  let outFactor = 1; // BASE^(MIN_SCAN_CHARS-1), mod 2^32
  for (let i = 1; i < MIN_SCAN_CHARS; i++) outFactor = Math.imul(outFactor, BASE);
  let h = windowHash(text, 0);
  for (let i = 0; ; i++) {
    const u = h >>> 0;
    const list = seen[u >>> 11] & (1 << (u & 7)) ? byPrefixHash.get(u) : undefined;
    if (list) for (const s of list) if (!found.has(s) && text.startsWith(s, i)) found.add(s);
    if (i + MIN_SCAN_CHARS >= text.length) break;
    h = (Math.imul(h - Math.imul(text.charCodeAt(i), outFactor), BASE) + text.charCodeAt(i + MIN_SCAN_CHARS)) | 0;
  }
  return [...found];
}

const BASE = 1_000_003;

function windowHash(text: string, at: number): number {
  let h = 0;
  for (let i = at; i < at + MIN_SCAN_CHARS; i++) h = (Math.imul(h, BASE) + text.charCodeAt(i)) | 0;
  return h >>> 0;
}

/** The KMS members that carry secrets: plaintexts, data keys, private keys, ECDH shared secrets, import tokens and imported material. */
const SECRET_MEMBERS = ['Plaintext', 'PrivateKeyPlaintext', 'SharedSecret', 'ImportToken', 'EncryptedKeyMaterial'];

/** AWS SDK middleware: registers the secret members of every response and request. */
export function recordSecretsMiddleware(client: { middlewareStack: { add: (...a: any[]) => void } }): void {
  client.middlewareStack.add(
    (next: (args: any) => Promise<any>) => async (args: any) => {
      for (const k of SECRET_MEMBERS) if (args.input?.[k]) registerSecret(args.input[k]);
      const result = await next(args);
      for (const k of SECRET_MEMBERS) if (result.output?.[k]) registerSecret(result.output[k]);
      return result;
    },
    { step: 'initialize', name: 'qkmsRecordSecrets' },
  );
}
