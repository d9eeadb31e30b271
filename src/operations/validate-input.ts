import type JoiBase from 'joi';
import { SerializationException, ValidationException } from '../errors/kms-errors';

/**
 * Members whose value never appears in an error message (kms-protocol.md §2.3: "Value at
 * 'plaintext'"): data, contexts, and grant tokens, which are bearer credentials.
 */
const SENSITIVE_MEMBERS = new Set(['Plaintext', 'PrivateKeyPlaintext', 'Message', 'CiphertextBlob', 'EncryptionContext', 'GrantToken', 'GrantTokens']);

/** joi detail types that mean "wrong JSON type", which AWS answers with SerializationException. */
const TYPE_ERRORS: Record<string, string> = {
  'string.base': 'a string',
  'number.base': 'a number',
  'number.integer': 'an integer',
  'number.unsafe': 'an integer',
  'boolean.base': 'a boolean',
  'object.base': 'a structure or map',
  'array.base': 'a list',
  'blob.base': 'a base64-encoded blob',
  'stringMap.base': 'a map',
  'stringMap.value': 'a map of strings to strings',
};

/**
 * Validates a parsed body against an operation's schema and turns the first type error into
 * SerializationException, or all constraint errors into one ValidationException worded like AWS:
 * `1 validation error detected: Value 'x' at 'keyId' failed to satisfy constraint: Member must …`.
 */
export function validateInput<T>(schema: JoiBase.ObjectSchema, body: unknown): T {
  const { error, value } = schema.validate(withoutNulls(body), { abortEarly: false, convert: false, allowUnknown: true });
  if (!error) return value as T;
  const typeError = error.details.find((d) => d.type in TYPE_ERRORS);
  if (typeError) {
    throw new SerializationException(`Value for '${awsPath(typeError.path)}' must be ${TYPE_ERRORS[typeError.type]}.`);
  }
  const constraints = error.details.map(describe);
  const n = constraints.length;
  throw new ValidationException(`${n} validation error${n === 1 ? '' : 's'} detected: ${constraints.join('; ')}`);
}

/** A member whose value is JSON null is absent, as AWS treats it (`{"NumberOfBytes": null}` is "NumberOfBytes is required."). */
function withoutNulls(body: unknown): unknown {
  if (!body || typeof body !== 'object' || Array.isArray(body) || !Object.values(body).includes(null)) return body;
  return Object.fromEntries(Object.entries(body).filter(([, v]) => v !== null));
}

function describe(d: JoiBase.ValidationErrorItem): string {
  const path = awsPath(d.path);
  const sensitive = SENSITIVE_MEMBERS.has(String(d.path[0]));
  const value = d.context?.value;
  const shown = sensitive || value === undefined || typeof value === 'object' ? '' : ` '${String(value)}'`;
  return `Value${shown} at '${path}' failed to satisfy constraint: ${constraint(d)}`;
}

function constraint(d: JoiBase.ValidationErrorItem): string {
  const limit = d.context?.limit;
  switch (d.type) {
    case 'any.required':
      return 'Member must not be null';
    case 'string.min':
    case 'array.min':
    case 'blob.min':
      return `Member must have length greater than or equal to ${limit}`;
    case 'string.max':
    case 'array.max':
    case 'blob.max':
      return `Member must have length less than or equal to ${limit}`;
    case 'number.min':
      return `Member must have value greater than or equal to ${limit}`;
    case 'number.max':
      return `Member must have value less than or equal to ${limit}`;
    case 'any.only':
      return `Member must satisfy enum value set: [${(d.context?.valids ?? []).join(', ')}]`;
    case 'string.pattern.base':
      // The pattern's source, as AWS prints it (^[a-zA-Z0-9:/_-]+$), not a JavaScript literal.
      return `Member must satisfy regular expression pattern: ${(d.context?.regex as RegExp | undefined)?.source}`;
    case 'string.empty':
      return 'Member must have length greater than or equal to 1';
    case 'stringMap.emptyKey':
      return 'Map keys must satisfy constraint: [Member must have length greater than or equal to 1]';
    case 'stringMap.emptyValue':
      return 'Map value must satisfy constraint: [Member must have length greater than or equal to 1]';
    case 'stringMap.maxPairs':
      return `Member must have length less than or equal to ${limit}`;
    case 'stringMap.maxValue':
      return `Map value must satisfy constraint: [Member must have length less than or equal to ${limit}]`;
    default:
      return d.message;
  }
}

/** KeyId -> keyId; Tags[0].TagKey -> tags.1.member.tagKey (AWS's 1-based list paths). */
function awsPath(path: Array<string | number>): string {
  return path.map((p) => (typeof p === 'number' ? `${p + 1}.member` : camel(p))).join('.');
}

function camel(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}
