import type * as pkcs11js from 'pkcs11js';
import type { Connection } from './connection';
import type { ObjectIndex } from './object-index';
import type { Pkcs11Options } from './pkcs11-options';

/**
 * What an operation group needs, and nothing more: the (instrumented) module, the connection that
 * lends sessions, the object index, and the options. A new concern the operations must consult
 * (what the token turned out to support, say) joins here rather than reaching into Pkcs11Hsm.
 */
export interface OperationContext {
  readonly p11: pkcs11js.PKCS11;
  readonly connection: Connection;
  readonly objects: ObjectIndex;
  readonly options: Pkcs11Options;
}
