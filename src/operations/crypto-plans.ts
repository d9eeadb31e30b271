import { unpackBlob } from '../domain/ciphertext-blob';
import type { EncryptionContext } from '../domain/encryption-context';
import { InvalidCiphertextException, ValidationException } from '../errors/kms-errors';
import { HsmError } from '../hsm/hsm-error';
import type { OperationContext } from './context';
import { assertOaepPlaintextFits, isRsaEncryptionKey, oaepFor } from './rsa-crypto';
import { assertKeyPurpose, currentMaterial, SYMMETRIC_ENCRYPTION, useKey } from './use-key';

/**
 * Encrypt, Decrypt and ReEncrypt in two steps: every check on the key first (lookup, policy, state,
 * usage, algorithm, context), then the HSM work — so DryRun answers after the checks and ReEncrypt
 * checks both keys before any cryptography. Symmetric keys use the envelope (AES-256-GCM or KWP
 * blobs), RSA ENCRYPT_DECRYPT keys RSAES-OAEP (rsa-crypto.ts).
 */
export interface SealPlan {
  arn: string;
  algorithm: string;
  materialId?: string;
  /** ValidationException when the plaintext is too long for the algorithm (RSA). */
  assertFits(plaintext: Buffer): void;
  seal(plaintext: Buffer): Promise<Buffer>;
}

export interface OpenPlan {
  arn: string;
  algorithm: string;
  materialId?: string;
  open(): Promise<Buffer>;
}

/**
 * The request's algorithm and context; `encoded` is the context already validated and encoded (the
 * handler does that first, as AWS validates before anything else). `plaintext`, when known before
 * the plan (Encrypt), is size-checked before what the HSM lacks, as AWS orders it (rsa-crypto.ts).
 */
type Request = { algorithm?: string; context?: EncryptionContext; encoded: Buffer; plaintext?: Buffer };

export async function planSeal(keyId: string, request: Request, ctx: OperationContext, options: { operation: string; action: string }): Promise<SealPlan> {
  const facts = { encryptionContext: request.context ?? {} };
  const resolved = await useKey(ctx, keyId, { allowAlias: true, action: options.action, facts, state: 'usableForCrypto' });
  if (isRsaEncryptionKey(resolved.key)) {
    const oaep = await oaepFor(resolved.key, resolved.arn, options.operation, request, ctx);
    const algorithm = request.algorithm!;
    const assertFits = (plaintext: Buffer) => assertOaepPlaintextFits(resolved.key, algorithm, oaep.hash, plaintext);
    return {
      arn: resolved.arn,
      algorithm,
      assertFits,
      seal: async (plaintext) => {
        assertFits(plaintext);
        return ctx.deps.hsm.rsaEncrypt(oaep.publicKey, oaep.hash, plaintext);
      },
    };
  }
  assertKeyPurpose(ctx, resolved, { operation: options.operation, ...SYMMETRIC_ENCRYPTION, algorithm: request.algorithm });
  const material = await currentMaterial(ctx, resolved.key);
  return {
    arn: resolved.arn,
    algorithm: 'SYMMETRIC_DEFAULT',
    materialId: material.materialId,
    assertFits: () => undefined,
    seal: (plaintext) => ctx.deps.envelope.encrypt(material, plaintext, request.encoded),
  };
}

export async function planOpen(
  ciphertext: Buffer,
  request: Request & { keyId?: string },
  ctx: OperationContext,
  options: { operation: string; action: string },
): Promise<OpenPlan> {
  if (request.algorithm?.startsWith('RSAES_')) return planOpenRsa(ciphertext, request, ctx, options);
  const blob = unpackBlob(ciphertext);
  const source = await useKey(ctx, request.keyId, {
    allowAlias: true,
    action: options.action,
    facts: { encryptionContext: request.context ?? {} },
    ciphertext: blob,
    state: 'usableForCrypto',
    purpose: { operation: options.operation, ...SYMMETRIC_ENCRYPTION, algorithm: request.algorithm },
  });
  return { arn: source.arn, algorithm: 'SYMMETRIC_DEFAULT', materialId: source.material.materialId, open: () => ctx.deps.envelope.open(blob, source.material, request.encoded) };
}

/**
 * An RSA ciphertext names no key, so KeyId is required (kms-protocol.md §10 Decrypt); a ciphertext
 * the private key cannot decode is InvalidCiphertextException.
 */
async function planOpenRsa(ciphertext: Buffer, request: Request & { keyId?: string }, ctx: OperationContext, options: { operation: string; action: string }): Promise<OpenPlan> {
  if (request.keyId === undefined) throw new ValidationException('KeyId is required to decrypt with an asymmetric KMS key.');
  const { key, arn } = await useKey(ctx, request.keyId, { allowAlias: true, action: options.action, state: 'usableForCrypto' });
  const oaep = await oaepFor(key, arn, options.operation, request, ctx);
  return {
    arn,
    algorithm: request.algorithm!,
    open: async () => {
      try {
        return await ctx.deps.hsm.rsaDecrypt(oaep.privateKey, oaep.hash, ciphertext);
      } catch (err) {
        if (err instanceof HsmError && err.kind === 'integrity') throw new InvalidCiphertextException('', { cause: err });
        throw err;
      }
    },
  };
}
