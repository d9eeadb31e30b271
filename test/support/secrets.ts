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

/** The KMS members that carry secrets: plaintexts, data keys, private keys, ECDH shared secrets. */
const SECRET_MEMBERS = ['Plaintext', 'PrivateKeyPlaintext', 'SharedSecret'];

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
