import JoiBase from 'joi';
import { UnsupportedOperationException } from '../errors/kms-errors';

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * joi with two wire types of our own:
 * - `blob`: a standard-alphabet, padded base64 string (kms-protocol.md §1) that validates to a
 *   Buffer; min/max apply to the decoded bytes (§9).
 * - `stringMap`: a JSON object of strings to non-empty strings (EncryptionContext, grant
 *   constraints), copied to an object without a prototype. Not joi's object type: joi copies
 *   objects with Object.assign, whose `__proto__` setter silently drops a key named `__proto__`,
 *   and a map's keys are data, where `__proto__` is as good a name as any. Without a prototype, a
 *   lookup of an absent key (`constructor`) finds nothing. A value that is not a string is a wrong
 *   JSON type (SerializationException, as awsJson clients' own deserialisers would say); an empty
 *   key or value breaks the model's length constraint (ValidationException).
 */
export const Joi = JoiBase.extend(
  (joi) => ({
    type: 'blob',
    base: joi.any(),
    messages: {
      'blob.base': '{{#label}} must be a base64-encoded blob',
      'blob.min': '{{#label}} must have length greater than or equal to {{#limit}}',
      'blob.max': '{{#label}} must have length less than or equal to {{#limit}}',
    },
    validate(value: unknown, helpers) {
      if (typeof value !== 'string' || !BASE64.test(value)) return { value, errors: helpers.error('blob.base') };
      return { value: Buffer.from(value, 'base64') };
    },
    rules: {
      min: {
        method(limit: number) {
          return this.$_addRule({ name: 'min', args: { limit } });
        },
        args: ['limit'],
        validate(value: Buffer, helpers, args) {
          return value.length >= args.limit ? value : helpers.error('blob.min', { limit: args.limit });
        },
      },
      max: {
        method(limit: number) {
          return this.$_addRule({ name: 'max', args: { limit } });
        },
        args: ['limit'],
        validate(value: Buffer, helpers, args) {
          return value.length <= args.limit ? value : helpers.error('blob.max', { limit: args.limit });
        },
      },
    },
  }),
  (joi) => ({
    type: 'stringMap',
    base: joi.any(),
    messages: {
      'stringMap.base': '{{#label}} must be a map',
      'stringMap.value': '{{#label}} must be a map of strings',
      'stringMap.emptyKey': '{{#label}} must not have an empty key',
      'stringMap.emptyValue': '{{#label}} must not have an empty value',
      'stringMap.maxPairs': '{{#label}} must have at most {{#limit}} pairs',
      'stringMap.maxValue': '{{#label}} must have values of at most {{#limit}} characters',
    },
    validate(value: unknown, helpers) {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return { value, errors: helpers.error('stringMap.base') };
      const entries = Object.entries(value);
      if (entries.some(([, v]) => typeof v !== 'string')) return { value, errors: helpers.error('stringMap.value') };
      if (entries.some(([k]) => k === '')) return { value, errors: helpers.error('stringMap.emptyKey') };
      if (entries.some(([, v]) => v === '')) return { value, errors: helpers.error('stringMap.emptyValue') };
      const map: Record<string, string> = Object.create(null);
      for (const [k, v] of entries) map[k] = v as string;
      return { value: map };
    },
    rules: {
      maxPairs: {
        method(limit: number) {
          return this.$_addRule({ name: 'maxPairs', args: { limit } });
        },
        args: ['limit'],
        validate(value: Record<string, string>, helpers, args) {
          return Object.keys(value).length <= args.limit ? value : helpers.error('stringMap.maxPairs', { limit: args.limit });
        },
      },
      maxValue: {
        method(limit: number) {
          return this.$_addRule({ name: 'maxValue', args: { limit } });
        },
        args: ['limit'],
        validate(value: Record<string, string>, helpers, args) {
          return Object.values(value).every((v) => v.length <= args.limit) ? value : helpers.error('stringMap.maxValue', { limit: args.limit });
        },
      },
    },
  }),
) as JoiBase.Root & { blob(): BlobSchema; stringMap(): StringMapSchema };

export interface BlobSchema extends JoiBase.AnySchema<Buffer> {
  min(limit: number): this;
  max(limit: number): this;
}

export interface StringMapSchema extends JoiBase.AnySchema<Record<string, string>> {
  maxPairs(limit: number): this;
  maxValue(limit: number): this;
}

export const keyIdSchema = Joi.string().min(1).max(2048);
/** RegionType in the AWS model (ReplicateKey, UpdatePrimaryRegion). */
export const regionSchema = Joi.string().min(1).max(32).pattern(/^([a-z]+-){2,3}\d+$/);
export const encryptionContextSchema = Joi.stringMap();
export const grantTokensSchema = Joi.array().items(Joi.string().min(1).max(8192)).max(10);
export const tagsSchema = Joi.array().items(
  Joi.object({ TagKey: Joi.string().min(1).max(128).required(), TagValue: Joi.string().min(0).max(256).allow('').required() }),
);
export const limitSchema = Joi.number().integer().min(1).max(1000);
export const markerSchema = Joi.string().min(1).max(1024).pattern(/^[\u0020-\u00FF]*$/);
export const dryRunSchema = Joi.boolean();
/** Nitro attestation (RecipientInfo): no PKCS#11 token can answer it; rejected per operation. */
export const recipientSchema = Joi.object();
/** Recipient is validated with the rest of the request, then refused where each operation checks it. */
export function rejectRecipient(recipient: object | undefined): void {
  if (recipient) throw new UnsupportedOperationException('Recipient (Nitro Enclaves attestation) is not supported by this gateway.');
}
export const signingAlgorithmSchema = Joi.string().valid(
  'RSASSA_PSS_SHA_256', 'RSASSA_PSS_SHA_384', 'RSASSA_PSS_SHA_512', 'RSASSA_PKCS1_V1_5_SHA_256', 'RSASSA_PKCS1_V1_5_SHA_384',
  'RSASSA_PKCS1_V1_5_SHA_512', 'ECDSA_SHA_256', 'ECDSA_SHA_384', 'ECDSA_SHA_512', 'SM2DSA', 'ML_DSA_SHAKE_256', 'ED25519_SHA_512', 'ED25519_PH_SHA_512',
);
export const macAlgorithmSchema = Joi.string().valid('HMAC_SHA_224', 'HMAC_SHA_256', 'HMAC_SHA_384', 'HMAC_SHA_512');
export const messageTypeSchema = Joi.string().valid('RAW', 'DIGEST', 'EXTERNAL_MU');
export const encryptionAlgorithmSchema = Joi.string().valid('SYMMETRIC_DEFAULT', 'RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256', 'SM2PKE');
/** AliasName: the model's constraint; the service's further rules are in domain/alias-name.ts. */
export const aliasNameSchema = Joi.string().min(1).max(256).pattern(/^[a-zA-Z0-9:/_-]+$/);
