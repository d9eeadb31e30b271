/**
 * Every error type QKMS puts on the wire. The class name is the exact `__type` (kms-protocol.md §2),
 * so grepping a wire name finds the code. Messages come from the static factories, never from
 * handlers, and never contain plaintext, key material or secrets.
 */
export abstract class KmsError extends Error {
  abstract readonly type: string;
  readonly status: number = 400;
  /** Some KMS errors are sent with no message at all (InvalidCiphertextException). */
  readonly hasMessage: boolean = true;

  constructor(message = '', options?: { cause?: unknown }) {
    super(message, options);
  }

  toBody(): { __type: string; message?: string } {
    return this.hasMessage ? { __type: this.type, message: this.message } : { __type: this.type };
  }
}

export class NotFoundException extends KmsError {
  readonly type = 'NotFoundException';
  static invalidKeyId(value: string): NotFoundException {
    return new NotFoundException(`Invalid keyId '${value}'`);
  }
  static keyDoesNotExist(keyArn: string): NotFoundException {
    return new NotFoundException(`Key '${keyArn}' does not exist`);
  }
  static invalidArnRegion(region: string): NotFoundException {
    return new NotFoundException(`Invalid arn ${region}`);
  }
  static aliasNotFound(aliasArn: string): NotFoundException {
    return new NotFoundException(`Alias ${aliasArn} is not found.`);
  }
}

export class DisabledException extends KmsError {
  readonly type = 'DisabledException';
  static forKey(keyArn: string): DisabledException {
    return new DisabledException(`${keyArn} is disabled.`);
  }
}

export class KMSInvalidStateException extends KmsError {
  readonly type = 'KMSInvalidStateException';
  static pendingDeletion(keyArn: string): KMSInvalidStateException {
    return new KMSInvalidStateException(`${keyArn} is pending deletion.`);
  }
  /** A multi-Region primary scheduled for deletion while replicas remain (our wording: AWS's is not recorded). */
  static pendingReplicaDeletion(keyArn: string): KMSInvalidStateException {
    return new KMSInvalidStateException(`${keyArn} is pending replica deletion.`);
  }
  static pendingImport(keyArn: string): KMSInvalidStateException {
    return new KMSInvalidStateException(`${keyArn} is pending import.`);
  }
  static notPendingDeletion(keyArn: string): KMSInvalidStateException {
    return new KMSInvalidStateException(`${keyArn} is not pending deletion.`);
  }
  /** CancelKeyDeletion once the scheduler has begun destroying the key (our wording: AWS has no such moment on the wire). */
  static deletionUnderWay(keyArn: string): KMSInvalidStateException {
    return new KMSInvalidStateException(`${keyArn} is pending deletion and its waiting period is over: the deletion has begun and can no longer be cancelled.`);
  }
}

export class InvalidKeyUsageException extends KmsError {
  readonly type = 'InvalidKeyUsageException';
  static forOperation(keyArn: string, keyUsage: string, operation: string): InvalidKeyUsageException {
    return new InvalidKeyUsageException(`${keyArn} key usage is ${keyUsage} which is not valid for ${operation}.`);
  }
  static forKeySpec(keyArn: string, keySpec: string, operation: string): InvalidKeyUsageException {
    return new InvalidKeyUsageException(`${keyArn} key spec is ${keySpec} which is not valid for ${operation}.`);
  }
}

export class InvalidCiphertextException extends KmsError {
  readonly type = 'InvalidCiphertextException';
  override readonly hasMessage = false;
}

/** Verify with a signature that does not verify: 400 with no message [D][O]. */
export class KMSInvalidSignatureException extends KmsError {
  readonly type = 'KMSInvalidSignatureException';
  override readonly hasMessage = false;
}

/** VerifyMac with a MAC that does not verify: 400 with no message [O]. */
export class KMSInvalidMacException extends KmsError {
  readonly type = 'KMSInvalidMacException';
  override readonly hasMessage = false;
}

export class IncorrectKeyException extends KmsError {
  readonly type = 'IncorrectKeyException';
  static create(): IncorrectKeyException {
    return new IncorrectKeyException('The key ID in the request does not identify a CMK that can perform this operation.');
  }
}

export class InvalidGrantTokenException extends KmsError {
  readonly type = 'InvalidGrantTokenException';
  static malformed(): InvalidGrantTokenException {
    return new InvalidGrantTokenException('The grant token is malformed.');
  }
  static unknown(): InvalidGrantTokenException {
    return new InvalidGrantTokenException('The grant token is not valid.');
  }
}

export class InvalidMarkerException extends KmsError {
  readonly type = 'InvalidMarkerException';
  static create(): InvalidMarkerException {
    return new InvalidMarkerException('The request was rejected because the marker that specifies where pagination should next begin is not valid.');
  }
}

export class InvalidArnException extends KmsError {
  readonly type = 'InvalidArnException';
}

export class TagException extends KmsError {
  readonly type = 'TagException';
}

export class LimitExceededException extends KmsError {
  readonly type = 'LimitExceededException';
}

export class ValidationException extends KmsError {
  readonly type = 'ValidationException';
}

export class SerializationException extends KmsError {
  readonly type = 'SerializationException';
}

export class UnknownOperationException extends KmsError {
  readonly type = 'UnknownOperationException';
  static create(): UnknownOperationException {
    return new UnknownOperationException('The requested operation is not supported by this service.');
  }
}

export class UnsupportedOperationException extends KmsError {
  readonly type = 'UnsupportedOperationException';
}

export class DryRunOperationException extends KmsError {
  readonly type = 'DryRunOperationException';
  static create(): DryRunOperationException {
    return new DryRunOperationException('The request would have succeeded, but the DryRun option is set.');
  }
}

/** Server faults (kms-protocol.md §2.2): 500, retried by the SDKs. */
export class KMSInternalException extends KmsError {
  readonly type = 'KMSInternalException';
  override readonly status = 500;
  static create(cause?: unknown): KMSInternalException {
    return new KMSInternalException('An internal error occurred. Quote the request id when reporting it.', { cause });
  }
  /** Fail-closed audit (src/audit/audit-log.ts): the operation's result is never sent without its record. */
  static notAudited(cause?: unknown): KMSInternalException {
    return new KMSInternalException('The request could not be recorded in the audit trail; no result is returned.', { cause });
  }
}

export class KeyUnavailableException extends KmsError {
  readonly type = 'KeyUnavailableException';
  override readonly status = 500;
  static forKey(keyArn: string, cause?: unknown): KeyUnavailableException {
    return new KeyUnavailableException(`${keyArn} is unavailable.`, { cause });
  }
  static tokenDown(cause?: unknown): KeyUnavailableException {
    return new KeyUnavailableException('The HSM that holds the key is not available.', { cause });
  }
}

/** 500 per the KMS API Reference (the legacy awsQuery trait says 503); kms-protocol.md §11 item 1. */
export class DependencyTimeoutException extends KmsError {
  readonly type = 'DependencyTimeoutException';
  override readonly status = 500;
  static create(cause?: unknown): DependencyTimeoutException {
    return new DependencyTimeoutException('The HSM did not answer within the configured timeout.', { cause });
  }
  /** Before /ready: a retryable 5xx that every KMS operation may return (kms-protocol.md §2). */
  static starting(): DependencyTimeoutException {
    return new DependencyTimeoutException('The key service is starting and cannot serve requests yet. Retry the request.');
  }
}

export class MalformedPolicyDocumentException extends KmsError {
  readonly type = 'MalformedPolicyDocumentException';
}

export class InvalidAliasNameException extends KmsError {
  readonly type = 'InvalidAliasNameException';
}

export class AlreadyExistsException extends KmsError {
  readonly type = 'AlreadyExistsException';
}

export class ConflictException extends KmsError {
  readonly type = 'ConflictException';
}

/** Authentication failures (kms-protocol.md §3.3); all 400 like the other client errors. */
export class MissingAuthenticationTokenException extends KmsError {
  readonly type = 'MissingAuthenticationTokenException';
  static create(): MissingAuthenticationTokenException {
    return new MissingAuthenticationTokenException('Missing Authentication Token');
  }
}

export class IncompleteSignatureException extends KmsError {
  readonly type = 'IncompleteSignatureException';
}

export class UnrecognizedClientException extends KmsError {
  readonly type = 'UnrecognizedClientException';
  static create(): UnrecognizedClientException {
    return new UnrecognizedClientException('The security token included in the request is invalid.');
  }
}

export class InvalidSignatureException extends KmsError {
  readonly type = 'InvalidSignatureException';
  static mismatch(): InvalidSignatureException {
    return new InvalidSignatureException(
      'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
    );
  }
}

export class AccessDeniedException extends KmsError {
  readonly type = 'AccessDeniedException';
}

export class ThrottlingException extends KmsError {
  readonly type = 'ThrottlingException';
}

/** No custom key store exists in a QKMS deployment (custom-key-stores.ts); AWS's wording is unverified [U]. */
export class CustomKeyStoreNotFoundException extends KmsError {
  readonly type = 'CustomKeyStoreNotFoundException';
  static create(what: string): CustomKeyStoreNotFoundException {
    return new CustomKeyStoreNotFoundException(`Custom key store ${what} does not exist.`);
  }
}

export class CloudHsmClusterNotFoundException extends KmsError {
  readonly type = 'CloudHsmClusterNotFoundException';
}

export class InvalidGrantIdException extends KmsError {
  readonly type = 'InvalidGrantIdException';
  static notFound(grantId: string): InvalidGrantIdException {
    return new InvalidGrantIdException(`Grant ID ${grantId} not found.`);
  }
}

/** ImportKeyMaterial with a token GetParametersForImport never gave, or gave for another key. */
export class InvalidImportTokenException extends KmsError {
  readonly type = 'InvalidImportTokenException';
  static create(): InvalidImportTokenException {
    return new InvalidImportTokenException('The import token is invalid or is associated with a different KMS key.');
  }
}

/** ImportKeyMaterial with a token past its ParametersValidTo. */
export class ExpiredImportTokenException extends KmsError {
  readonly type = 'ExpiredImportTokenException';
  static create(): ExpiredImportTokenException {
    return new ExpiredImportTokenException('The import token has expired. Use GetParametersForImport to get a new import token and public key.');
  }
}

/** Imported material that does not fit the key, or is not the material the key had before. */
export class IncorrectKeyMaterialException extends KmsError {
  readonly type = 'IncorrectKeyMaterialException';
}
