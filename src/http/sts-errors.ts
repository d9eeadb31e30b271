import { KmsError } from '../errors/kms-errors';
import { toKmsError } from './kms-error-handler';

/**
 * An error in STS's query-protocol vocabulary: a Code and an HTTP status (STS API reference,
 * "Common Errors"); the error handler writes it as <ErrorResponse>. Type is Sender for 4xx and
 * Receiver for 5xx, as AWS sends them.
 */
export class StsError extends Error {
  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  get type(): 'Sender' | 'Receiver' {
    return this.status >= 500 ? 'Receiver' : 'Sender';
  }

  /** AWS's wording for an action the version does not have (seen from STS, IAM and SES alike). */
  static invalidAction(action: string, version: string | undefined): StsError {
    return new StsError('InvalidAction', 400, `Could not find operation ${clip(action)} for version ${version === undefined ? 'NO_VERSION_SPECIFIED' : clip(version)}`);
  }

  static missingAction(): StsError {
    return new StsError('MissingAction', 400, 'The request is missing an action or a required parameter.');
  }

  static repeated(parameter: string): StsError {
    return new StsError('ValidationError', 400, `The parameter ${parameter} must be given once.`);
  }
}

/** Client text echoed in a message is bounded: a 64 KiB Action must not come back whole. */
function clip(value: string): string {
  return value.length > 128 ? `${value.slice(0, 128)}…` : value;
}

/**
 * What reaches the STS route's error handler: its own errors, or those of the parts it shares
 * with KMS (body limit, SigV4, rate limit), which are renamed to the codes STS uses for them.
 */
export function toStsError(err: unknown): StsError {
  if (err instanceof StsError) return err;
  const kms: KmsError = toKmsError(err);
  switch (kms.type) {
    case 'MissingAuthenticationTokenException':
      return new StsError('MissingAuthenticationToken', 403, 'Request is missing Authentication Token');
    case 'IncompleteSignatureException':
      return new StsError('IncompleteSignature', 400, kms.message);
    case 'UnrecognizedClientException':
      return new StsError('InvalidClientTokenId', 403, 'The security token included in the request is invalid.');
    case 'InvalidSignatureException':
      return new StsError('SignatureDoesNotMatch', 403, kms.message);
    // botocore and the JS SDK retry both Throttling and ThrottlingException with backoff.
    case 'ThrottlingException':
      return new StsError('Throttling', 400, 'Rate exceeded');
    case 'ValidationException':
    case 'SerializationException':
      return new StsError('ValidationError', 400, kms.message);
    default:
      return new StsError('InternalFailure', 500, 'The request processing has failed because of an unknown error, exception or failure.', { cause: kms.cause ?? err });
  }
}
