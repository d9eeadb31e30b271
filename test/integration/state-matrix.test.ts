import assert from 'node:assert/strict';
import { integration } from '../support/integration-hooks';
import { rawCall, startGateway, type Harness } from '../support/harness';

/**
 * kms-protocol.md §5, the key-state x operation matrix, for the states a key of this gateway can
 * be in. Each cell runs on a fresh key brought into the state, through the wire protocol.
 *   ok: 200 · D: DisabledException "<ARN> is disabled." · S: KMSInvalidStateException "<ARN> is
 *   pending deletion." · S4: KMSInvalidStateException "<ARN> is not pending deletion."
 */
type Outcome = 'ok' | 'D' | 'S' | 'S4';
type State = 'Enabled' | 'Disabled' | 'PendingDeletion';

interface Fixture {
  keyId: string;
  other: string;
  blob: string;
  /** A ciphertext under the other (Enabled) key. */
  otherBlob: string;
  alias: string;
}

interface Row {
  op: string;
  note?: string;
  body: (f: Fixture) => Record<string, unknown>;
  outcomes: Record<State, Outcome>;
}

const row = (op: string, body: Row['body'], [Enabled, Disabled, PendingDeletion]: Outcome[], note?: string): Row => ({
  op, note, body, outcomes: { Enabled, Disabled, PendingDeletion },
});

const MATRIX: Row[] = [
  row('Encrypt', (f) => ({ KeyId: f.keyId, Plaintext: 'AA==' }), ['ok', 'D', 'S']),
  row('Decrypt', (f) => ({ CiphertextBlob: f.blob }), ['ok', 'D', 'S']),
  row('ReEncrypt', (f) => ({ CiphertextBlob: f.blob, DestinationKeyId: f.other }), ['ok', 'D', 'S']),
  row('ReEncrypt', (f) => ({ CiphertextBlob: f.otherBlob, DestinationKeyId: f.keyId }), ['ok', 'D', 'S'], 'key as destination'),
  row('GenerateDataKey', (f) => ({ KeyId: f.keyId, KeySpec: 'AES_256' }), ['ok', 'D', 'S']),
  row('GenerateDataKeyWithoutPlaintext', (f) => ({ KeyId: f.keyId, KeySpec: 'AES_256' }), ['ok', 'D', 'S']),
  row('EnableKey', (f) => ({ KeyId: f.keyId }), ['ok', 'ok', 'S']),
  row('DisableKey', (f) => ({ KeyId: f.keyId }), ['ok', 'ok', 'S']),
  row('ScheduleKeyDeletion', (f) => ({ KeyId: f.keyId }), ['ok', 'ok', 'S']),
  row('CancelKeyDeletion', (f) => ({ KeyId: f.keyId }), ['S4', 'S4', 'ok']),
  row('CreateAlias', (f) => ({ AliasName: `${f.alias}-new`, TargetKeyId: f.keyId }), ['ok', 'ok', 'S']),
  row('UpdateAlias', (f) => ({ AliasName: `${f.alias}-other`, TargetKeyId: f.keyId }), ['ok', 'ok', 'S']),
  row('UpdateAlias', (f) => ({ AliasName: f.alias, TargetKeyId: f.other }), ['ok', 'ok', 'ok'], 'key as the old target'),
  row('DeleteAlias', (f) => ({ AliasName: f.alias }), ['ok', 'ok', 'ok']),
  row('TagResource', (f) => ({ KeyId: f.keyId, Tags: [{ TagKey: 'k', TagValue: 'v' }] }), ['ok', 'ok', 'S']),
  row('UntagResource', (f) => ({ KeyId: f.keyId, TagKeys: ['k'] }), ['ok', 'ok', 'S']),
  row('UpdateKeyDescription', (f) => ({ KeyId: f.keyId, Description: 'd' }), ['ok', 'ok', 'S']),
  row('EnableKeyRotation', (f) => ({ KeyId: f.keyId }), ['ok', 'D', 'S']),
  row('DisableKeyRotation', (f) => ({ KeyId: f.keyId }), ['ok', 'D', 'S']),
  row('RotateKeyOnDemand', (f) => ({ KeyId: f.keyId }), ['ok', 'D', 'S']),
  row('GetKeyRotationStatus', (f) => ({ KeyId: f.keyId }), ['ok', 'ok', 'ok']),
  row('ListKeyRotations', (f) => ({ KeyId: f.keyId }), ['ok', 'ok', 'ok']),
  row('DescribeKey', (f) => ({ KeyId: f.keyId }), ['ok', 'ok', 'ok']),
  row('ListAliases', (f) => ({ KeyId: f.keyId }), ['ok', 'ok', 'ok']),
  row('ListResourceTags', (f) => ({ KeyId: f.keyId }), ['ok', 'ok', 'ok']),
];

describe('Key state x operation matrix (kms-protocol.md §5)', () => {
  let gw: Harness;
  let n = 0;
  before(async () => {
    gw = await startGateway(integration().hsm);
  });
  after(() => gw.close());

  const call = (op: string, body: unknown) => rawCall(gw.url, `TrentService.${op}`, JSON.stringify(body));

  /** A key in `state`, a ciphertext made under it while it was Enabled, an alias on it, and an Enabled other key. */
  async function fixture(state: State): Promise<Fixture> {
    const keyId = (await call('CreateKey', {})).json!.KeyMetadata.KeyId as string;
    const other = (await call('CreateKey', {})).json!.KeyMetadata.KeyId as string;
    const alias = `alias/matrix-${++n}`;
    await call('CreateAlias', { AliasName: alias, TargetKeyId: keyId });
    await call('CreateAlias', { AliasName: `${alias}-other`, TargetKeyId: other });
    const blob = (await call('Encrypt', { KeyId: keyId, Plaintext: 'AQID' })).json!.CiphertextBlob as string;
    const otherBlob = (await call('Encrypt', { KeyId: other, Plaintext: 'AQID' })).json!.CiphertextBlob as string;
    if (state === 'Disabled') await call('DisableKey', { KeyId: keyId });
    if (state === 'PendingDeletion') await call('ScheduleKeyDeletion', { KeyId: keyId });
    return { keyId, other, blob, otherBlob, alias };
  }

  for (const { op, note, body, outcomes } of MATRIX) {
    for (const state of ['Enabled', 'Disabled', 'PendingDeletion'] as const) {
      it(`${op}${note ? ` (${note})` : ''} on a ${state} key: ${outcomes[state]}`, async () => {
        const f = await fixture(state);
        const res = await call(op, body(f));
        const arn = `arn:verenc:111122223333:key/${f.keyId}`;
        const expected = {
          ok: undefined,
          D: { __type: 'DisabledException', message: `${arn} is disabled.` },
          S: { __type: 'KMSInvalidStateException', message: `${arn} is pending deletion.` },
          S4: { __type: 'KMSInvalidStateException', message: `${arn} is not pending deletion.` },
        }[outcomes[state]];
        if (expected === undefined) assert.equal(res.status, 200, res.text);
        else assert.deepEqual([res.status, res.json], [400, expected]);
      });
    }
  }
});
