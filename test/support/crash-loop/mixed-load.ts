import crypto from 'node:crypto';
import {
  CancelKeyDeletionCommand,
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DisableKeyCommand,
  EnableKeyCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  RotateKeyOnDemandCommand,
  ScheduleKeyDeletionCommand,
  SignCommand,
  type KMSClient,
} from '@aws-sdk/client-kms';
import { errorName, outcomeOf, type KeyState, type Ledger, type LedgerKey, type Outcome } from './ledger';
import type { Rng } from './rng';

/** The quota of on-demand rotations per key (src/operations/key-rotation.ts): past it a rotation is refused, not interesting. */
const ON_DEMAND_ROTATIONS = 25;
const HOT_KEYS = 20;

export interface LoadOptions {
  round: number;
  concurrency: number;
  /** A plaintext or data key the suite's log scan should look for (the driver samples them). */
  onSecret(value: Uint8Array): void;
  /** An acknowledged result found wrong while the gateway still ran: a loss. */
  onLoss(what: string): void;
}

export interface LoadCounts {
  sent: number;
  outcomes: Record<Outcome, number>;
  /** Failures by wire type or socket error code, e.g. "ECONNRESET", "DisabledException 400". */
  errors: Record<string, number>;
}

/**
 * Concurrent workers, each sending one request at a time, chosen by weight among the operations
 * that change key material, key state or aliases and those that make ciphertexts to check later.
 * Only acknowledged results enter the ledger.
 */
export class MixedLoad {
  readonly counts: LoadCounts = { sent: 0, outcomes: { acknowledged: 0, refused: 0, unknown: 0 }, errors: {} };
  private readonly inFlight = new Map<string, number>();
  private isStopping = false;
  private workers: Array<Promise<void>> = [];
  private readonly operations: Array<[number, () => Promise<void>]> = [
    [6, () => this.createKey('symmetric')],
    [0.8, () => this.createKey('ecc-sign')],
    [0.4, () => this.createKey('rsa-encrypt')],
    [24, () => this.encrypt()],
    [24, () => this.generateDataKey()],
    [18, () => this.decrypt()],
    [2, () => this.rsaEncrypt()],
    [3, () => this.sign()],
    [4, () => this.createAlias()],
    [4, () => this.lifecycle('RotateKeyOnDemand', 'symmetric', 'Enabled', 'Enabled', (k) => this.client.send(new RotateKeyOnDemandCommand({ KeyId: k })))],
    [2.5, () => this.lifecycle('DisableKey', undefined, 'Enabled', 'Disabled', (k) => this.client.send(new DisableKeyCommand({ KeyId: k })))],
    [2.5, () => this.lifecycle('EnableKey', undefined, 'Disabled', 'Enabled', (k) => this.client.send(new EnableKeyCommand({ KeyId: k })))],
    [1, () => this.lifecycle('ScheduleKeyDeletion', undefined, this.rng.next() < 0.5 ? 'Enabled' : 'Disabled', 'PendingDeletion', (k) => this.client.send(new ScheduleKeyDeletionCommand({ KeyId: k, PendingWindowInDays: 7 })))],
    [1, () => this.lifecycle('CancelKeyDeletion', undefined, 'PendingDeletion', 'Disabled', (k) => this.client.send(new CancelKeyDeletionCommand({ KeyId: k })))],
  ];
  private readonly totalWeight = this.operations.reduce((s, [w]) => s + w, 0);

  constructor(
    private readonly client: KMSClient,
    private readonly ledger: Ledger,
    private readonly rng: Rng,
    private readonly options: LoadOptions,
  ) {}

  start(): void {
    this.workers = Array.from({ length: this.options.concurrency }, () => this.worker());
  }

  /** Requests sent and not yet answered, by operation: what a kill now lands in. */
  inFlightNow(): Record<string, number> {
    return Object.fromEntries([...this.inFlight].filter(([, n]) => n > 0));
  }

  /** No new request from now; resolves when every request sent has settled (answered or failed). */
  async stop(): Promise<void> {
    this.isStopping = true;
    await Promise.all(this.workers);
  }

  private async worker(): Promise<void> {
    while (!this.isStopping) {
      // Too few usable keys: make one first, so that every round has work to interrupt.
      if (this.ledger.keysIn('Enabled', 'symmetric').length < 3) await this.createKey('symmetric');
      else await this.pick()();
    }
  }

  private pick(): () => Promise<void> {
    let x = this.rng.next() * this.totalWeight;
    for (const [weight, op] of this.operations) if ((x -= weight) < 0) return op;
    return this.operations[0][1];
  }

  /** Sends one request, counting it in flight until it settles, and classifies the outcome. */
  private async call<T>(operation: string, send: () => Promise<T>): Promise<{ outcome: Outcome; value?: T; error?: unknown }> {
    this.counts.sent++;
    this.inFlight.set(operation, (this.inFlight.get(operation) ?? 0) + 1);
    try {
      const value = await send();
      this.counts.outcomes.acknowledged++;
      const requestId = (value as { $metadata?: { requestId?: string } }).$metadata?.requestId;
      if (requestId) this.ledger.acknowledgedRequests.push(requestId);
      return { outcome: 'acknowledged', value };
    } catch (error) {
      const outcome = outcomeOf(error);
      this.counts.outcomes[outcome]++;
      const name = errorName(error);
      this.counts.errors[name] = (this.counts.errors[name] ?? 0) + 1;
      return { outcome, error };
    } finally {
      this.inFlight.set(operation, this.inFlight.get(operation)! - 1);
    }
  }

  /**
   * Mostly one of the newest keys, as real traffic goes to a few hot keys: after every restart a
   * key's first use looks its objects up on the token, which on SoftHSM2's file store costs more
   * with every object on it, and a load spread over hundreds of keys thins out as the token grows.
   */
  private hotKey(keys: LedgerKey[]): LedgerKey | undefined {
    return this.rng.pick(keys.length > HOT_KEYS && this.rng.next() < 0.8 ? keys.slice(-HOT_KEYS) : keys);
  }

  private context(): Record<string, string> | undefined {
    if (this.rng.next() < 0.2) return undefined;
    return { tenant: `t-${Math.floor(this.rng.next() * 50)}`, request: crypto.randomBytes(6).toString('hex'), round: String(this.options.round) };
  }

  private async createKey(kind: LedgerKey['kind']): Promise<void> {
    const input = kind === 'symmetric' ? {} : kind === 'ecc-sign' ? { KeySpec: 'ECC_NIST_P256' as const, KeyUsage: 'SIGN_VERIFY' as const } : { KeySpec: 'RSA_2048' as const, KeyUsage: 'ENCRYPT_DECRYPT' as const };
    const r = await this.call(`CreateKey ${kind}`, () => this.client.send(new CreateKeyCommand({ ...input, Description: `crash loop round ${this.options.round}` })));
    if (r.value) this.ledger.addKey(r.value.KeyMetadata!.KeyId!, kind, this.options.round);
  }

  private async encrypt(): Promise<void> {
    const key = this.hotKey(this.ledger.keysIn('Enabled', 'symmetric'));
    if (!key) return;
    const plaintext = crypto.randomBytes(1 + Math.floor(this.rng.next() * 512));
    const context = this.context();
    const r = await this.call('Encrypt', () => this.client.send(new EncryptCommand({ KeyId: key.keyId, Plaintext: plaintext, EncryptionContext: context })));
    if (!r.value) return;
    this.options.onSecret(plaintext);
    this.ledger.ciphertexts.push({ keyId: key.keyId, blob: r.value.CiphertextBlob!, plaintext, context, round: this.options.round, from: 'Encrypt', isChecked: false });
  }

  private async generateDataKey(): Promise<void> {
    const key = this.hotKey(this.ledger.keysIn('Enabled', 'symmetric'));
    if (!key) return;
    const context = this.context();
    const size = this.rng.next() < 0.7 ? { KeySpec: 'AES_256' as const } : { NumberOfBytes: 16 + Math.floor(this.rng.next() * 49) };
    const r = await this.call('GenerateDataKey', () => this.client.send(new GenerateDataKeyCommand({ KeyId: key.keyId, EncryptionContext: context, ...size })));
    if (!r.value) return;
    const plaintext = Buffer.from(r.value.Plaintext!);
    this.options.onSecret(plaintext);
    this.ledger.ciphertexts.push({ keyId: key.keyId, blob: r.value.CiphertextBlob!, plaintext, context, round: this.options.round, from: 'GenerateDataKey', isChecked: false });
  }

  private async rsaEncrypt(): Promise<void> {
    const key = this.hotKey(this.ledger.keysIn('Enabled', 'rsa-encrypt'));
    if (!key) return;
    const plaintext = crypto.randomBytes(1 + Math.floor(this.rng.next() * 214)); // OAEP-SHA1 over RSA-2048 takes up to 214 bytes
    const r = await this.call('Encrypt RSA', () => this.client.send(new EncryptCommand({ KeyId: key.keyId, Plaintext: plaintext, EncryptionAlgorithm: 'RSAES_OAEP_SHA_1' })));
    if (!r.value) return;
    this.options.onSecret(plaintext);
    this.ledger.ciphertexts.push({ keyId: key.keyId, blob: r.value.CiphertextBlob!, plaintext, algorithm: 'RSAES_OAEP_SHA_1', round: this.options.round, from: 'Encrypt', isChecked: false });
  }

  private async sign(): Promise<void> {
    const key = this.hotKey(this.ledger.keysIn('Enabled', 'ecc-sign'));
    if (!key) return;
    const message = crypto.randomBytes(1 + Math.floor(this.rng.next() * 256));
    const r = await this.call('Sign', () => this.client.send(new SignCommand({ KeyId: key.keyId, Message: message, SigningAlgorithm: 'ECDSA_SHA_256' })));
    if (r.value) this.ledger.signatures.push({ keyId: key.keyId, message, signature: r.value.Signature!, round: this.options.round, isChecked: false });
  }

  /** An earlier acknowledged ciphertext of a key known Enabled: its plaintext, or a loss. */
  private async decrypt(): Promise<void> {
    const enabled = new Set(this.ledger.keysIn('Enabled').map((k) => k.keyId));
    const c = this.rng.pick(this.ledger.ciphertexts.slice(-2000).filter((x) => enabled.has(x.keyId)));
    if (!c) return;
    const r = await this.call('Decrypt', () => this.client.send(new DecryptCommand({ CiphertextBlob: c.blob, EncryptionContext: c.context, ...(c.algorithm && { KeyId: c.keyId, EncryptionAlgorithm: c.algorithm }) })));
    if (r.value && !Buffer.from(r.value.Plaintext!).equals(c.plaintext)) this.options.onLoss(`round ${this.options.round}: Decrypt of a ${c.from} result of ${c.keyId} (round ${c.round}) returned another plaintext`);
    if (r.error && errorName(r.error).startsWith('InvalidCiphertextException')) this.options.onLoss(`round ${this.options.round}: Decrypt of a ${c.from} result of ${c.keyId} (round ${c.round}) answered ${errorName(r.error)} while the gateway ran`);
  }

  private async createAlias(): Promise<void> {
    const key = this.rng.pick([...this.ledger.keysIn('Enabled'), ...this.ledger.keysIn('Disabled')]);
    if (!key) return;
    const name = `alias/crash-loop/r${this.options.round}-${crypto.randomBytes(5).toString('hex')}`;
    const r = await this.call('CreateAlias', () => this.client.send(new CreateAliasCommand({ AliasName: name, TargetKeyId: key.keyId })));
    if (r.value) this.ledger.aliases.push({ name, keyId: key.keyId, round: this.options.round, isChecked: false });
  }

  /**
   * A change of state (or a rotation, which keeps the state Enabled) of a key known to be in
   * `from`, one per key at a time.
   */
  private async lifecycle(operation: string, kind: LedgerKey['kind'] | undefined, from: KeyState, to: KeyState, send: (keyId: string) => Promise<unknown>): Promise<void> {
    const isRotation = from === 'Enabled' && to === 'Enabled';
    const candidates = this.ledger.keysIn(from, kind).filter((k) => !k.isBusy && (!isRotation || k.rotations.max < ON_DEMAND_ROTATIONS));
    // A deletion takes a key made this round when there is one: older keys carry most of the
    // ciphertexts to check, and a key pending deletion has its ciphertexts left out of the checks.
    const fresh = to === 'PendingDeletion' ? candidates.filter((k) => k.round === this.options.round) : [];
    const key = this.rng.pick(fresh.length > 0 ? fresh : candidates);
    if (!key) return;
    key.isBusy = true;
    try {
      const r = await this.call(operation, () => send(key.keyId));
      if (isRotation) this.ledger.rotated(key, r.outcome);
      else this.ledger.changed(key, to, r.outcome);
    } finally {
      key.isBusy = false;
    }
  }
}
