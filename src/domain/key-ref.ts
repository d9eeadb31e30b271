/**
 * Parses what a client passes as KeyId into one tagged type (kms-protocol.md §4, "Resolution
 * algorithm"). Both ARN forms are accepted whatever QKMS_ARN_FORMAT prints:
 *   arn:verenc:<account>:key/<id>                      (the seed's form, no partition/region)
 *   arn:<partition>:kms:<region>:<account>:key/<id>     (AWS form)
 */
export type KeyRef =
  | { kind: 'keyId'; keyId: string }
  | { kind: 'keyArn'; keyId: string; account: string; region?: string }
  | { kind: 'aliasName'; aliasName: string }
  | { kind: 'aliasArn'; aliasName: string; account: string; region?: string }
  | { kind: 'invalid'; reason: 'keyId' | 'arn' };

const KEY_ID = /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$/;
const ALIAS_NAME = /^alias\/[a-zA-Z0-9:/_-]+$/;
const VERENC_ARN = /^arn:verenc:(\d{12}):(key|alias)\/(.+)$/;
const AWS_ARN = /^arn:(aws|aws-cn|aws-us-gov):kms:([a-z0-9-]+):(\d{12}):(key|alias)\/(.+)$/;

export function isKeyId(value: string): boolean {
  return KEY_ID.test(value);
}

export function parseKeyRef(input: string): KeyRef {
  if (input.startsWith('arn:')) return parseArn(input);
  if (input.startsWith('alias/')) {
    return ALIAS_NAME.test(input) ? { kind: 'aliasName', aliasName: input } : { kind: 'invalid', reason: 'keyId' };
  }
  return KEY_ID.test(input) ? { kind: 'keyId', keyId: input } : { kind: 'invalid', reason: 'keyId' };
}

function parseArn(input: string): KeyRef {
  const v = VERENC_ARN.exec(input);
  const a = v ? undefined : AWS_ARN.exec(input);
  if (!v && !a) return { kind: 'invalid', reason: 'arn' };
  const [account, type, rest, region] = v ? [v[1], v[2], v[3], undefined] : [a![3], a![4], a![5], a![2]];
  if (type === 'key') {
    return KEY_ID.test(rest) ? { kind: 'keyArn', keyId: rest, account, region } : { kind: 'invalid', reason: 'arn' };
  }
  const aliasName = `alias/${rest}`;
  return ALIAS_NAME.test(aliasName) ? { kind: 'aliasArn', aliasName, account, region } : { kind: 'invalid', reason: 'arn' };
}

/** Key id text <-> the 16 bytes stored in a ciphertext blob: a UUID's, or the 32 hex digits after `mrk-`. */
export function keyIdToBytes(keyId: string): Buffer {
  if (/^mrk-[0-9a-f]{32}$/.test(keyId)) return Buffer.from(keyId.slice(4), 'hex');
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(keyId)) {
    throw new Error('only UUID and mrk- key ids are stored in ciphertext blobs');
  }
  return Buffer.from(keyId.replace(/-/g, ''), 'hex');
}

export function keyIdFromBytes(bytes: Buffer, isMultiRegion = false): string {
  const h = bytes.toString('hex');
  return isMultiRegion ? `mrk-${h}` : `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A multi-Region key's id: `mrk-` and 32 lowercase hex digits. */
export function isMultiRegionKeyId(keyId: string): boolean {
  return keyId.startsWith('mrk-');
}
