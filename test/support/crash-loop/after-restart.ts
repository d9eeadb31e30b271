import {
  DecryptCommand,
  DescribeKeyCommand,
  EnableKeyCommand,
  ListKeyRotationsCommand,
  ListKeysCommand,
  VerifyCommand,
  type KMSClient,
} from '@aws-sdk/client-kms';
import { errorName, type KeyState, type Ledger, type LedgerKey } from './ledger';
import type { Rng } from './rng';

export interface CheckOptions {
  round: number;
  /** Results checked after an earlier kill are re-checked at most this many of each kind (Infinity: all). */
  sampleOld: number;
  concurrency: number;
  rng: Rng;
  onLoss(what: string): void;
}

export interface CheckTally {
  keys: number;
  aliases: number;
  ciphertexts: number;
  /** Ciphertexts checked for the first time (acknowledged since the previous check). */
  newCiphertexts: number;
  signatures: number;
  /** Acknowledged ciphertexts and signatures of keys now pending deletion: not usable, not checked. */
  skippedPendingDeletion: number;
  /** Keys the store has that no acknowledged CreateKey made: a CreateKey that landed but was never answered. */
  unacknowledgedKeys: number;
  lost: { keys: number; keyStates: number; rotations: number; aliases: number; ciphertexts: number; signatures: number };
}

async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]);
  }));
}

/** Those never checked, and a sample of those checked before: damage from a later kill would show in them. */
function toCheck<T>(items: readonly T[], isNew: (item: T) => boolean, options: CheckOptions): T[] {
  return [...items.filter(isNew), ...options.rng.sample(items.filter((i) => !isNew(i)), options.sampleOld)];
}

/**
 * After a kill and a restart, over the gateway's API: every acknowledged key still exists in a state
 * it may be in (and its rotations between the acknowledged and the attempted), every acknowledged
 * alias still names its key, every acknowledged ciphertext of a key not pending deletion decrypts
 * to its plaintext under its context, and every acknowledged signature verifies. Disabled keys are
 * enabled (an acknowledged change) so that their ciphertexts can be checked too.
 */
export async function checkAcknowledged(client: KMSClient, ledger: Ledger, options: CheckOptions): Promise<CheckTally> {
  const tally: CheckTally = { keys: 0, aliases: 0, ciphertexts: 0, newCiphertexts: 0, signatures: 0, skippedPendingDeletion: 0, unacknowledgedKeys: 0, lost: { keys: 0, keyStates: 0, rotations: 0, aliases: 0, ciphertexts: 0, signatures: 0 } };
  const loss = (kind: keyof CheckTally['lost'], what: string) => {
    tally.lost[kind]++;
    options.onLoss(`round ${options.round}: ${what}`);
  };
  const keys = [...ledger.keys.values()];
  const isUncertain = (k: LedgerKey) => k.states.size > 1 || k.rotations.min !== k.rotations.max || k.states.has('Disabled') || !k.isChecked;
  await forEachLimit(toCheck(keys, isUncertain, options), options.concurrency, async (key) => {
    tally.keys++;
    await checkKey(client, key, loss);
  });
  await forEachLimit(toCheck(ledger.aliases, (a) => !a.isChecked, options), options.concurrency, async (alias) => {
    tally.aliases++;
    try {
      const target = (await client.send(new DescribeKeyCommand({ KeyId: alias.name }))).KeyMetadata!.KeyId;
      if (target !== alias.keyId) loss('aliases', `${alias.name} (round ${alias.round}) names ${target}, not ${alias.keyId}`);
      alias.isChecked = true;
    } catch (err) {
      loss('aliases', `${alias.name} (round ${alias.round}) of ${alias.keyId}: ${errorName(err)} ${(err as Error).message}`);
    }
  });
  const isUsable = (keyId: string) => !ledger.keys.get(keyId)!.states.has('PendingDeletion');
  const ciphertexts = toCheck(ledger.ciphertexts, (c) => !c.isChecked, options);
  tally.skippedPendingDeletion += ciphertexts.filter((c) => !isUsable(c.keyId)).length;
  await forEachLimit(ciphertexts.filter((c) => isUsable(c.keyId)), options.concurrency, async (c) => {
    tally.ciphertexts++;
    if (!c.isChecked) tally.newCiphertexts++;
    const what = `${c.from} result of ${c.keyId} (round ${c.round}, ${c.blob.length}-byte blob ${Buffer.from(c.blob).toString('base64').slice(0, 40)}…)`;
    try {
      const out = await client.send(new DecryptCommand({ CiphertextBlob: c.blob, EncryptionContext: c.context, ...(c.algorithm && { KeyId: c.keyId, EncryptionAlgorithm: c.algorithm }) }));
      if (!Buffer.from(out.Plaintext!).equals(c.plaintext)) loss('ciphertexts', `${what} decrypts to another plaintext`);
      c.isChecked = true;
    } catch (err) {
      loss('ciphertexts', `${what} does not decrypt: ${errorName(err)} ${(err as Error).message}`);
    }
  });
  const signatures = toCheck(ledger.signatures, (s) => !s.isChecked, options);
  tally.skippedPendingDeletion += signatures.filter((s) => !isUsable(s.keyId)).length;
  await forEachLimit(signatures.filter((s) => isUsable(s.keyId)), options.concurrency, async (s) => {
    tally.signatures++;
    try {
      const out = await client.send(new VerifyCommand({ KeyId: s.keyId, Message: s.message, Signature: s.signature, SigningAlgorithm: 'ECDSA_SHA_256' }));
      if (!out.SignatureValid) loss('signatures', `a signature by ${s.keyId} (round ${s.round}) no longer verifies`);
      s.isChecked = true;
    } catch (err) {
      loss('signatures', `a signature by ${s.keyId} (round ${s.round}) cannot be verified: ${errorName(err)} ${(err as Error).message}`);
    }
  });
  tally.unacknowledgedKeys = await countUnacknowledgedKeys(client, ledger);
  return tally;
}

/** DescribeKey (and ListKeyRotations): the key exists in a possible state; the state is then known. A Disabled key is enabled. */
async function checkKey(client: KMSClient, key: LedgerKey, loss: (kind: keyof CheckTally['lost'], what: string) => void): Promise<void> {
  let state: KeyState;
  try {
    state = (await client.send(new DescribeKeyCommand({ KeyId: key.keyId }))).KeyMetadata!.KeyState as KeyState;
  } catch (err) {
    loss('keys', `${key.kind} key ${key.keyId} (may be ${[...key.states].join(' or ')}): DescribeKey answered ${errorName(err)} ${(err as Error).message}`);
    return;
  }
  if (!key.states.has(state)) loss('keyStates', `${key.kind} key ${key.keyId} is ${state}; acknowledged: ${[...key.states].join(' or ')}`);
  key.states = new Set([state]);
  if (key.kind === 'symmetric') {
    try {
      const rotations = (await client.send(new ListKeyRotationsCommand({ KeyId: key.keyId, Limit: 1000 }))).Rotations!.length;
      if (rotations < key.rotations.min || rotations > key.rotations.max) loss('rotations', `${key.keyId} has ${rotations} on-demand rotations; ${key.rotations.min} acknowledged, ${key.rotations.max} attempted`);
      key.rotations = { min: rotations, max: rotations };
    } catch (err) {
      loss('rotations', `ListKeyRotations of ${key.keyId} answered ${errorName(err)} ${(err as Error).message}`);
    }
  }
  if (state === 'Disabled') {
    await client.send(new EnableKeyCommand({ KeyId: key.keyId })); // the gateway is idle: this must succeed
    key.states = new Set(['Enabled']);
  }
  key.isChecked = true;
}

async function countUnacknowledgedKeys(client: KMSClient, ledger: Ledger): Promise<number> {
  let found = 0;
  let marker: string | undefined;
  do {
    const page = await client.send(new ListKeysCommand({ Limit: 1000, Marker: marker }));
    for (const k of page.Keys!) {
      if (!ledger.seenKeyIds.has(k.KeyId!)) {
        ledger.seenKeyIds.add(k.KeyId!);
        found++;
      }
    }
    marker = page.NextMarker;
  } while (marker);
  return found;
}
