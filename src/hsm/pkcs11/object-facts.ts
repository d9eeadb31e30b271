import * as pkcs11js from 'pkcs11js';
import type { KeyObjectFacts } from '../hsm';
import { ckrName } from './ckr-table';
import { CKK_EC_EDWARDS, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA } from './mechanisms';
import { CURVE_OIDS } from './templates';

/** The boolean attributes an auditor asks about: protection first, then what the key may do. */
const FLAG_NAMES = [
  'CKA_TOKEN', 'CKA_PRIVATE', 'CKA_SENSITIVE', 'CKA_ALWAYS_SENSITIVE', 'CKA_EXTRACTABLE', 'CKA_NEVER_EXTRACTABLE', 'CKA_LOCAL',
  'CKA_MODIFIABLE', 'CKA_COPYABLE', 'CKA_DESTROYABLE', 'CKA_TRUSTED', 'CKA_WRAP_WITH_TRUSTED',
  'CKA_ENCRYPT', 'CKA_DECRYPT', 'CKA_WRAP', 'CKA_UNWRAP', 'CKA_SIGN', 'CKA_VERIFY', 'CKA_DERIVE',
] as const;

const constants = pkcs11js as unknown as Record<string, unknown>;

/**
 * The answers that mean "this object has no such attribute (for its class)" or "will not say":
 * the report shows the attribute as not reported. Anything else (a broken session, a device
 * error) is not a fact about the key, so it fails the report instead of becoming a false verdict.
 */
const NOT_REPORTED = new Set(['CKR_ATTRIBUTE_TYPE_INVALID', 'CKR_ATTRIBUTE_SENSITIVE']);

/**
 * Value -> name for one family of constants. pkcs11js exports some values under two names
 * (CKK_ECDSA = CKK_EC); `preferred` names (the current PKCS#11 ones) win, then the first exported.
 */
function namesOf(prefix: string, preferred: Record<string, number>): Map<number, string> {
  const names = new Map<number, string>();
  for (const [name, value] of [...Object.entries(preferred), ...Object.entries(constants)]) {
    if (name.startsWith(prefix) && typeof value === 'number' && !names.has(value)) names.set(value, name);
  }
  return names;
}

const MECHANISMS = namesOf('CKM_', { CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA, CKM_EC_KEY_PAIR_GEN: pkcs11js.CKM_EC_KEY_PAIR_GEN });
const KEY_TYPES = namesOf('CKK_', { CKK_EC_EDWARDS, CKK_EC: pkcs11js.CKK_EC });
const CLASSES = namesOf('CKO_', {});

const nameOr = (names: Map<number, string>, value: number) => names.get(value) ?? `0x${value.toString(16).padStart(8, '0')}`;

/** How many handles one C_FindObjects call asks for; the search is looped until it returns none. */
const FIND_BATCH = 64;

/**
 * Every object matching the template: C_FindObjects is called until it returns none (a token
 * answers at most the count asked per call), and the search is always finalised (SoftHSM2 answers
 * CKR_OPERATION_ACTIVE to the session's next search otherwise).
 */
export function findAll(p11: pkcs11js.PKCS11, session: pkcs11js.Handle, template: pkcs11js.Template): pkcs11js.Handle[] {
  p11.C_FindObjectsInit(session, template);
  const found: pkcs11js.Handle[] = [];
  try {
    for (;;) {
      const batch = p11.C_FindObjects(session, FIND_BATCH);
      found.push(...batch);
      if (batch.length === 0) return found;
    }
  } finally {
    p11.C_FindObjectsFinal(session);
  }
}

/** Every token object matching the template (QKMS asks by CKA_ID), as the token reports it. Reads no CKA_VALUE. */
export function readObjectFacts(p11: pkcs11js.PKCS11, session: pkcs11js.Handle, template: pkcs11js.Template): KeyObjectFacts[] {
  return findAll(p11, session, template).map((h) => factsOf(p11, session, h));
}

function factsOf(p11: pkcs11js.PKCS11, session: pkcs11js.Handle, handle: pkcs11js.Handle): KeyObjectFacts {
  // One attribute per call: a token answers the whole template with an error if one attribute is
  // invalid for the class (CKA_SENSITIVE on a public key), and we want every other one.
  const read = (type: number): Buffer | undefined => {
    try {
      return p11.C_GetAttributeValue(session, handle, [{ type }])[0].value;
    } catch (err) {
      if (NOT_REPORTED.has(ckrName(err) ?? '')) return undefined;
      throw err;
    }
  };
  const flags: Record<string, boolean> = {};
  for (const name of FLAG_NAMES) {
    const value = read(constants[name] as number);
    if (value && value.length > 0) flags[name] = value[0] !== 0;
  }
  const allowed = read(pkcs11js.CKA_ALLOWED_MECHANISMS);
  const keyGen = read(pkcs11js.CKA_KEY_GEN_MECHANISM);
  const valueLen = read(pkcs11js.CKA_VALUE_LEN);
  const modulusBits = read(pkcs11js.CKA_MODULUS_BITS);
  const ecParams = read(pkcs11js.CKA_EC_PARAMS);
  const keyType = read(pkcs11js.CKA_KEY_TYPE);
  return {
    label: (read(pkcs11js.CKA_LABEL) ?? Buffer.alloc(0)).toString('utf8'),
    id: (read(pkcs11js.CKA_ID) ?? Buffer.alloc(0)).toString('hex'),
    objectClass: nameOr(CLASSES, ulong(read(pkcs11js.CKA_CLASS))),
    keyType: keyType ? nameOr(KEY_TYPES, ulong(keyType)) : 'none',
    flags,
    allowedMechanisms: allowed && allowed.length > 0 ? ulongs(allowed).map((m) => nameOr(MECHANISMS, m)) : null,
    ...(keyGen && isKnownUlong(keyGen) && { keyGenMechanism: nameOr(MECHANISMS, ulong(keyGen)) }),
    ...(valueLen && { sizeBits: ulong(valueLen) * 8 }),
    ...(modulusBits && { sizeBits: ulong(modulusBits) }),
    ...(ecParams && { curve: Object.entries(CURVE_OIDS).find(([, oid]) => oid.equals(ecParams))?.[0] ?? ecParams.toString('hex') }),
  };
}

/** CK_ULONG: 8 bytes little-endian on 64-bit Linux, 4 elsewhere. */
function ulong(value: Buffer | undefined): number {
  if (!value) return -1;
  return value.length === 8 ? Number(value.readBigUInt64LE(0)) : value.readUInt32LE(0);
}

function ulongs(value: Buffer): number[] {
  const size = value.length % 8 === 0 ? 8 : 4;
  return Array.from({ length: value.length / size }, (_, i) => ulong(value.subarray(i * size, (i + 1) * size)));
}

/** CK_UNAVAILABLE_INFORMATION (all ones) means the token does not know how the key was made. */
function isKnownUlong(value: Buffer): boolean {
  return !value.every((b) => b === 0xff);
}
