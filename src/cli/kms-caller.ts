/**
 * One KMS operation call, whatever carries it: SigV4-signed HTTP to a running gateway
 * (http-caller.ts) or the operation registry in this process (local-caller.ts). Both answer the
 * wire's JSON and fail with the wire's error type, so every command is written once.
 */
export interface KmsCaller {
  call<T = Record<string, any>>(operation: string, input: object): Promise<T>;
  close(): Promise<void>;
}

/** A KMS error answer (`__type` and message), from either mode. */
export class KmsCallError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status: number,
  ) {
    super(message ? `${type}: ${message}` : type);
  }
}

/** Every page of a KMS list operation (Marker / NextMarker / Truncated). */
export async function listAll<T>(kms: KmsCaller, operation: string, input: object, member: string): Promise<T[]> {
  const items: T[] = [];
  let marker: string | undefined;
  do {
    const page = await kms.call(operation, { ...input, ...(marker && { Marker: marker }) });
    items.push(...((page[member] as T[] | undefined) ?? []));
    marker = page.Truncated ? (page.NextMarker as string) : undefined;
  } while (marker);
  return items;
}
