import * as pkcs11js from 'pkcs11js';
import type { KeyObjectFacts, ObjectRef } from '../hsm';
import { HsmError } from '../hsm-error';
import { ckrName, classifyCkr } from './ckr-table';
import type { Connection } from './connection';
import { findAll, readObjectFacts } from './object-facts';
import type { Session } from './token-access';

/**
 * Token objects by the CKA_ID the store recorded (STYLE.md lesson 4: identified, never guessed),
 * with a cache of their handles: CKA_ID (hex) -> handle, filled lazily by lookups, generations and
 * listings, and emptied on every (re)connect (clear).
 */
export class ObjectIndex {
  private readonly handles = new Map<string, pkcs11js.Handle>();

  constructor(
    private readonly p11: pkcs11js.PKCS11,
    private readonly connection: Connection,
  ) {}

  clear(): void {
    this.handles.clear();
  }

  /** A handle the caller just made the object of. */
  remember(ref: ObjectRef, handle: pkcs11js.Handle): void {
    this.handles.set(ref.id, handle);
  }

  /**
   * Runs body with the key's handle on a pooled session: cached, or looked up by id on first use.
   * A handle that went stale (the object destroyed by another process, or the module re-initialised
   * by another thread) is looked up once more.
   */
  async withKey<T>(ref: ObjectRef, label: string, body: (s: Session, key: pkcs11js.Handle) => T): Promise<T> {
    try {
      return await this.withKeyOnce(ref, label, body);
    } catch (err) {
      if (!(err instanceof NoObjectWithId) || !(await this.connection.refreshTokenIndex(err.searchedIn))) throw err;
      return this.withKeyOnce(ref, label, body);
    }
  }

  private async withKeyOnce<T>(ref: ObjectRef, label: string, body: (s: Session, key: pkcs11js.Handle) => T): Promise<T> {
    return this.connection.withSession(label, (s) => {
      const cached = this.handles.get(ref.id);
      if (cached !== undefined) {
        try {
          return body(s, cached);
        } catch (err) {
          if (classifyCkr(ckrName(err)) !== 'key') throw err;
          this.handles.delete(ref.id);
        }
      }
      const handle = this.lookUp(s, ref);
      this.handles.set(ref.id, handle);
      return body(s, handle);
    });
  }

  /** The one token object with the ref's id: none or several is HsmError 'key' naming it, never a guess. */
  private lookUp(s: Session, ref: ObjectRef): pkcs11js.Handle {
    const found = findAll(this.p11, s, idTemplate(ref));
    if (found.length === 1) return found[0];
    const problem = found.length === 0 ? `no token object has the CKA_ID of ${ref.label}` : `${found.length} token objects carry the CKA_ID of ${ref.label}: refusing to guess which holds the key`;
    // Named by the search that found none or several, not by the call that would have used the key.
    if (found.length === 0) throw new NoObjectWithId(problem, this.connection.moduleGeneration);
    throw new HsmError('key', 'C_FindObjects', undefined, { cause: new Error(problem) });
  }

  async destroy(ref: ObjectRef): Promise<number> {
    this.handles.delete(ref.id);
    return this.searching('C_DestroyObject', ref, (s, found) => {
      for (const handle of found) this.p11.C_DestroyObject(s, handle);
      if (found.length > 0) this.connection.tokenWritten();
      return found.length;
    });
  }

  async count(ref: ObjectRef): Promise<number> {
    return this.searching('C_FindObjects', ref, (_s, found) => found.length);
  }

  async inspect(ref: ObjectRef): Promise<KeyObjectFacts[]> {
    return this.searching('C_GetAttributeValue', ref, (s) => readObjectFacts(this.p11, s, idTemplate(ref)));
  }

  /**
   * Runs body with the token objects carrying the ref's id. When none does and the module's index
   * may be stale (Connection.refreshTokenIndex), searches once more after the refresh: a deletion
   * or a repair must not take "not seen by this process" for "not on the token".
   */
  private async searching<T>(label: string, ref: ObjectRef, body: (s: Session, found: pkcs11js.Handle[]) => T): Promise<T> {
    const once = () => this.connection.withSession(label, (s) => {
      const found = findAll(this.p11, s, idTemplate(ref));
      return { found: found.length, searchedIn: this.connection.moduleGeneration, value: body(s, found) };
    });
    const first = await once();
    if (first.found > 0 || !(await this.connection.refreshTokenIndex(first.searchedIn))) return first.value;
    return (await once()).value;
  }

  /**
   * Also warms the handle cache: an id exactly one key object carries is cached (with every key
   * object read, not only those under the prefix, so an id shared with someone else's object stays
   * uncached and its lookup refuses it). Start-up lists once for reconciliation, so the first use of
   * each key needs no search of its own (a linear C_FindObjects on SoftHSM2: ~40 ms at 2,400 objects).
   */
  async list(labelPrefix: string): Promise<ObjectRef[]> {
    return this.connection.withSession('C_FindObjects', (s) => {
      const found: ObjectRef[] = [];
      const handlesById = new Map<string, pkcs11js.Handle[]>();
      // By class: every key object has CKA_LABEL and CKA_ID, so one read per object answers both.
      for (const objectClass of [pkcs11js.CKO_SECRET_KEY, pkcs11js.CKO_PRIVATE_KEY, pkcs11js.CKO_PUBLIC_KEY]) {
        for (const h of findAll(this.p11, s, [{ type: pkcs11js.CKA_TOKEN, value: true }, { type: pkcs11js.CKA_CLASS, value: objectClass }])) {
          let label: Buffer;
          let id: Buffer;
          try {
            [label, id] = this.p11.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_LABEL }, { type: pkcs11js.CKA_ID }]).map((a) => a.value as Buffer);
          } catch (err) {
            // Destroyed by someone else since the search found it: it is not on the token any more.
            if (err instanceof HsmError && err.kind === 'key') continue;
            throw err;
          }
          const text = label.toString('utf8');
          const hex = id.toString('hex');
          handlesById.set(hex, [...(handlesById.get(hex) ?? []), h]);
          if (text.startsWith(labelPrefix)) found.push({ id: hex, label: text });
        }
      }
      for (const [hex, handles] of handlesById) if (handles.length === 1) this.handles.set(hex, handles[0]);
      return found;
    });
  }
}

/** The search by id found no token object (CKR_OBJECT_HANDLE_INVALID: KeyUnavailableException, as for a handle gone stale). */
class NoObjectWithId extends HsmError {
  constructor(
    problem: string,
    /** The module generation the search ran in (Connection.refreshTokenIndex). */
    readonly searchedIn: number,
  ) {
    super('key', 'C_FindObjects', 'CKR_OBJECT_HANDLE_INVALID', { cause: new Error(problem) });
  }
}

/** Token objects with the ref's CKA_ID. */
function idTemplate(ref: ObjectRef): pkcs11js.Template {
  return [
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_ID, value: Buffer.from(ref.id, 'hex') },
  ];
}
