/**
 * Who is inside the PKCS#11 module, shared by every thread of this process that loaded it (the HSM
 * threads, abandoned ones included): one SharedArrayBuffer of Int32 cells.
 *
 * A thread *enters* for each piece of PKCS#11 work (Connection.withSession; its own slot counts
 * them) and leaves after it. C_Finalize — a recycle, a reconnect after an outage, a re-read of the
 * token's objects, close — pulls the module from under every other thread, so it runs only
 * *exclusively*: the writer cell is taken (new work waits), then every slot must drain to zero. A
 * thread stuck in a call never leaves, so its slot stays taken until the thread has exited (the
 * owner then frees it, and the writer cell if the thread held it: ModuleLockSlots.free): an exclusive section gives up after its wait ('busy')
 * and the caller falls back to what it does without C_Finalize.
 *
 * Every exclusive section bumps the generation before its work: a thread that finds the generation
 * changed knows its sessions, its login and its cached object handles died with the old
 * initialisation (handles may now name other objects) and connects afresh before its next call.
 * (The cell counts twice per section, at its start and its end, so that a thread that asks for a
 * re-initialisation while another's is under way can tell that one — it started after anything the
 * asker did in the module — from one that ended before it asked.)
 * The module's own process-wide counts live here too: session objects made since the last
 * initialisation (SoftHSM2 keeps each until C_Finalize) and token writes (its index of token
 * objects goes stale after this process's own writes), whichever thread made them.
 */
const WRITER = 0;
const GENERATION = 1;
const SESSION_OBJECTS = 2;
const TOKEN_WRITES = 3;
const FIRST_SLOT = 4;
/** Threads that may be alive in the module at once: up to 32 HSM threads plus up to 100 abandoned ones (config/schema.ts), with room. */
export const MODULE_LOCK_SLOTS = 256;

/** What a thread is given: the shared cells and its own slot in them. */
export interface ModuleLockShare {
  buffer: SharedArrayBuffer;
  slot: number;
}

export type ExclusiveOutcome =
  /** The work ran with no other thread inside. */
  | 'done'
  /** Another thread re-initialised the module meanwhile: whatever the work was for is done. */
  | 'other'
  /** Another thread stayed inside past the wait (stuck, or generating a key pair): the work did not run. */
  | 'busy';

export class ModuleLock {
  private readonly cells: Int32Array;
  /** Own cell index + 1 in the writer cell (0 means free). */
  private readonly me: number;
  private readonly own: number;

  constructor(share?: ModuleLockShare) {
    this.cells = new Int32Array(share?.buffer ?? newModuleLockBuffer());
    this.own = FIRST_SLOT + (share?.slot ?? 0);
    this.me = this.own + 1;
  }

  /** Which initialisation of the module this is: changes when an exclusive section starts its work. */
  get generation(): number {
    return (Atomics.load(this.cells, GENERATION) + 1) >> 1;
  }

  get sessionObjects(): number {
    return Atomics.load(this.cells, SESSION_OBJECTS);
  }

  get tokenWrites(): number {
    return Atomics.load(this.cells, TOKEN_WRITES);
  }

  sessionObjectCreated(): void {
    Atomics.add(this.cells, SESSION_OBJECTS, 1);
  }

  tokenWritten(): void {
    Atomics.add(this.cells, TOKEN_WRITES, 1);
  }

  /** Whether this thread holds the module exclusively now. */
  get isExclusive(): boolean {
    return Atomics.load(this.cells, WRITER) === this.me;
  }

  /**
   * Enters for one piece of work: at once (undefined) unless another thread holds the module
   * exclusively, else a promise settled once it has let go. Each enter needs one leave.
   */
  enter(): Promise<void> | undefined {
    Atomics.add(this.cells, this.own, 1);
    const writer = Atomics.load(this.cells, WRITER);
    if (writer === 0 || writer === this.me) return undefined;
    Atomics.sub(this.cells, this.own, 1);
    return this.enterAfterWriter();
  }

  leave(): void {
    Atomics.sub(this.cells, this.own, 1);
  }

  /**
   * Runs `work` with no thread inside the module but this one's caller, waiting at most
   * `maxWaitMs` for the others (and this thread's own work on the libuv pool) to leave. Re-entrant.
   */
  async exclusive(work: () => Promise<void> | void, maxWaitMs: number): Promise<ExclusiveOutcome> {
    if (this.isExclusive) {
      await work();
      return 'done';
    }
    // A section at work now (odd count) started after this thread's last call; one still waiting must run its work to count.
    const counted = Atomics.load(this.cells, GENERATION);
    const served = counted % 2 === 1 ? counted + 1 : counted + 2;
    while (Atomics.compareExchange(this.cells, WRITER, 0, this.me) !== 0) {
      await this.writerGone();
      if (Atomics.load(this.cells, GENERATION) >= served) return 'other';
    }
    let isWorking = false;
    try {
      for (const deadline = performance.now() + maxWaitMs; this.anyoneInside(); ) {
        if (performance.now() >= deadline) return 'busy';
        await pause();
      }
      // Before the work: a failure half-way (finalised, not initialised again) voids the others' sessions too.
      Atomics.add(this.cells, GENERATION, 1);
      isWorking = true;
      Atomics.store(this.cells, SESSION_OBJECTS, 0);
      Atomics.store(this.cells, TOKEN_WRITES, 0);
      await work();
      return 'done';
    } finally {
      if (isWorking) Atomics.add(this.cells, GENERATION, 1);
      Atomics.store(this.cells, WRITER, 0);
    }
  }

  private anyoneInside(): boolean {
    for (let i = FIRST_SLOT; i < this.cells.length; i++) if (Atomics.load(this.cells, i) > 0) return true;
    return false;
  }

  private async enterAfterWriter(): Promise<void> {
    for (;;) {
      await this.writerGone();
      if (this.enter() === undefined) return;
    }
  }

  private async writerGone(): Promise<void> {
    while (Atomics.load(this.cells, WRITER) !== 0) await pause();
  }
}

/**
 * The owner's side (the main thread): hands each thread it starts a slot, and frees the slot once
 * the thread has exited — whatever the thread left counted in it (it was terminated inside a call)
 * is void then.
 */
export class ModuleLockSlots {
  readonly buffer = newModuleLockBuffer();
  private readonly available: number[] = Array.from({ length: MODULE_LOCK_SLOTS }, (_, i) => i);

  take(): ModuleLockShare {
    const slot = this.available.shift();
    if (slot === undefined) throw new Error(`more than ${MODULE_LOCK_SLOTS} threads in the PKCS#11 module at once`);
    return { buffer: this.buffer, slot };
  }

  free(share: ModuleLockShare): void {
    const cells = new Int32Array(this.buffer);
    Atomics.store(cells, FIRST_SLOT + share.slot, 0);
    // A thread that died holding the module exclusively (terminated in a re-initialisation) lets
    // go, its section counted as ended (while the writer cell is still its own, no one else can).
    if (Atomics.load(cells, WRITER) === FIRST_SLOT + share.slot + 1) {
      if (Atomics.load(cells, GENERATION) % 2 === 1) Atomics.add(cells, GENERATION, 1);
      Atomics.store(cells, WRITER, 0);
    }
    this.available.push(share.slot);
  }
}

function newModuleLockBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(4 * (FIRST_SLOT + MODULE_LOCK_SLOTS));
}

/** A re-initialisation takes milliseconds and a call tens of µs: waiting by polling costs nothing that matters. */
function pause(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 1));
}
