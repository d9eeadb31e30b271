/**
 * What gateway replicas sharing one store agree through. With PostgreSQL these are session
 * advisory locks on one connection per replica (store/postgres-coordination.ts): a lock ends with
 * its connection, so a replica killed with -9 gives up all of them. With SQLite one process owns
 * the data dir (data-dir-lock.ts), so it is alone and holds everything (store/local-coordination.ts).
 */
export interface ReplicaCoordination {
  /** This process's id, unique per start: recorded on every material intent it makes. */
  readonly ownerId: string;
  /**
   * Runs `repair` only if the process that recorded an intent (`owner`; undefined for intents
   * recorded before owners were) is gone, holding its lease meanwhile; false, without running
   * it, while that process lives: its CreateKey or rotation is still in flight.
   */
  ifOwnerGone(owner: string | undefined, repair: () => Promise<void>): Promise<boolean>;
  /** Whether this process holds the scheduler's lease, taking it when it is free. */
  holdsSchedulerLease(): Promise<boolean>;
  /** `fn` while no other replica runs it (first-start creation of the internal keys). */
  exclusively<T>(fn: () => Promise<T>): Promise<T>;
  /** Tells the other replicas that keys or aliases changed, before the change is answered (the key cache). */
  announceKeyChange(): Promise<void>;
  /**
   * `listener` runs when a replica announced a change, and when announcements may have been
   * missed (the connection that receives them was replaced).
   */
  onKeyChange(listener: () => void): void;
  close(): Promise<void>;
}
