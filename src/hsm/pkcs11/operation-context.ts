import type * as pkcs11js from 'pkcs11js';
import type { TokenCapabilities } from '../capabilities';
import type { Connection } from './connection';
import type { ObjectIndex } from './object-index';
import type { Pkcs11Options } from './pkcs11-options';

/**
 * What an operation group needs, and nothing more: the (instrumented) module, the connection that
 * lends sessions, the object index, the options, and what the token turned out to support
 * (capability discovery: which RFC 5649 mechanism number, whether CKA_ALLOWED_MECHANISMS is taken).
 */
export interface OperationContext {
  readonly p11: pkcs11js.PKCS11;
  readonly connection: Connection;
  readonly objects: ObjectIndex;
  readonly options: Pkcs11Options;
  readonly capabilities: TokenCapabilities;
}
