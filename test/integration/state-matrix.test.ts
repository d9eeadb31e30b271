import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { wrapKeyMaterial } from '../support/import-wrap';
import { integration } from '../support/integration-hooks';
import { rawCall, startGateway, type Harness } from '../support/harness';

/**
 * kms-protocol.md §5, the key-state x operation matrix, for the states a key of this gateway can
 * be in. Each cell runs on a fresh key brought into the state, through the wire protocol.
 *   ok: 200 · D: DisabledException "<ARN> is disabled." · S: KMSInvalidStateException "<ARN> is
 *   pending deletion." · S4: KMSInvalidStateException "<ARN> is not pending deletion." ·
 *   P: KMSInvalidStateException "<ARN> is pending import." · U6: UnsupportedOperationException
 *   "<ARN> origin is EXTERNAL which is not valid for this operation." · UA: the same for AWS_KMS ·
 *   NP: KMSInvalidStateException "No available key material pending rotation for the key: <ARN>."
 * A PendingImport key is an imported (EXTERNAL) key whose material was deleted after a ciphertext
 * was made under it; rows marked `imported` run on imported keys in every state.
 */
type Outcome = 'ok' | 'D' | 'S' | 'S4' | 'P' | 'U6' | 'UA' | 'NP';
type State = 'Enabled' | 'Disabled' | 'PendingDeletion' | 'PendingImport';

interface Fixture {
  keyId: string;
  other: string;
  blob: string;
  /** A ciphertext under the other (Enabled) key. */
  otherBlob: string;
  alias: string;
  /** For an imported key: a token and the same material encrypted under its key, for a reimport. */
  importToken: string;
  encryptedMaterial: string;
}

interface Row {
  op: string;
  note?: string;
  body: (f: Fixture) => Record<string, unknown>;
  outcomes: Record<State, Outcome>;
  imported?: boolean;
}

const row = (op: string, body: Row['body'], [Enabled, Disabled, PendingDeletion, PendingImport]: Outcome[], note?: string): Row => ({
  op, note, body, outcomes: { Enabled, Disabled, PendingDeletion, PendingImport },
});
const importedRow = (...args: Parameters<typeof row>): Row => ({ ...row(...args), imported: true });

const MATRIX: Row[] = [
  row('Encrypt', (f) => ({ KeyId: f.keyId, Plaintext: 'AA==' }), ['ok', 'D', 'S', 'P']),
  row('Decrypt', (f) => ({ CiphertextBlob: f.blob }), ['ok', 'D', 'S', 'P']),
  row('ReEncrypt', (f) => ({ CiphertextBlob: f.blob, DestinationKeyId: f.other }), ['ok', 'D', 'S', 'P']),
  row('ReEncrypt', (f) => ({ CiphertextBlob: f.otherBlob, DestinationKeyId: f.keyId }), ['ok', 'D', 'S', 'P'], 'key as destination'),
  row('GenerateDataKey', (f) => ({ KeyId: f.keyId, KeySpec: 'AES_256' }), ['ok', 'D', 'S', 'P']),
  row('GenerateDataKeyWithoutPlaintext', (f) => ({ KeyId: f.keyId, KeySpec: 'AES_256' }), ['ok', 'D', 'S', 'P']),
  row('CreateGrant', (f) => ({ KeyId: f.keyId, GranteePrincipal: 'arn:aws:iam::111122223333:role/r', Operations: ['Decrypt'] }), ['ok', 'D', 'S', 'P']),
  row('EnableKey', (f) => ({ KeyId: f.keyId }), ['ok', 'ok', 'S', 'P']),
  row('DisableKey', (f) => ({ KeyId: f.keyId }), ['ok', 'ok', 'S', 'P']),
  row('ScheduleKeyDeletion', (f) => ({ KeyId: f.keyId }), ['ok', 'ok', 'S', 'ok']),
  row('CancelKeyDeletion', (f) => ({ KeyId: f.keyId }), ['S4', 'S4', 'ok', 'S4']),
  row('CreateAlias', (f) => ({ AliasName: `${f.alias}-new`, TargetKeyId: f.keyId }), ['ok', 'ok', 'S', 'ok']),
  row('UpdateAlias', (f) => ({ AliasName: `${f.alias}-other`, TargetKeyId: f.keyId }), ['ok', 'ok', 'S', 'ok']),
  row('UpdateAlias', (f) => ({ AliasName: f.alias, TargetKeyId: f.other }), ['ok', 'ok', 'ok', 'ok'], 'key as the old target'),
  row('DeleteAlias', (f) => ({ AliasName: f.alias }), ['ok', 'ok', 'ok', 'ok']),
  row('TagResource', (f) => ({ KeyId: f.keyId, Tags: [{ TagKey: 'k', TagValue: 'v' }] }), ['ok', 'ok', 'S', 'ok']),
  row('UntagResource', (f) => ({ KeyId: f.keyId, TagKeys: ['k'] }), ['ok', 'ok', 'S', 'ok']),
  row('UpdateKeyDescription', (f) => ({ KeyId: f.keyId, Description: 'd' }), ['ok', 'ok', 'S', 'ok']),
  row('EnableKeyRotation', (f) => ({ KeyId: f.keyId }), ['ok', 'D', 'S', 'U6']),
  row('DisableKeyRotation', (f) => ({ KeyId: f.keyId }), ['ok', 'D', 'S', 'U6']),
  row('RotateKeyOnDemand', (f) => ({ KeyId: f.keyId }), ['ok', 'D', 'S', 'P']),
  row('GetKeyRotationStatus', (f) => ({ KeyId: f.keyId }), ['ok', 'ok', 'ok', 'U6']),
  row('ListKeyRotations', (f) => ({ KeyId: f.keyId }), ['ok', 'ok', 'ok', 'ok']),
  row('DescribeKey', (f) => ({ KeyId: f.keyId }), ['ok', 'ok', 'ok', 'ok']),
  row('ListAliases', (f) => ({ KeyId: f.keyId }), ['ok', 'ok', 'ok', 'ok']),
  row('ListResourceTags', (f) => ({ KeyId: f.keyId }), ['ok', 'ok', 'ok', 'ok']),
  row('GetParametersForImport', (f) => ({ KeyId: f.keyId, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' }), ['UA', 'UA', 'UA', 'ok']),
  row('DeleteImportedKeyMaterial', (f) => ({ KeyId: f.keyId }), ['UA', 'UA', 'UA', 'ok'], 'deleted already'),
  importedRow('GetParametersForImport', (f) => ({ KeyId: f.keyId, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' }), ['ok', 'ok', 'S', 'ok']),
  importedRow('ImportKeyMaterial', (f) => ({ KeyId: f.keyId, ImportToken: f.importToken, EncryptedKeyMaterial: f.encryptedMaterial, ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' }), ['ok', 'ok', 'S', 'ok'], 'the same material again'),
  importedRow('DeleteImportedKeyMaterial', (f) => ({ KeyId: f.keyId }), ['ok', 'ok', 'ok', 'ok']),
  importedRow('EnableKeyRotation', (f) => ({ KeyId: f.keyId }), ['U6', 'U6', 'U6', 'U6']),
  importedRow('GetKeyRotationStatus', (f) => ({ KeyId: f.keyId }), ['U6', 'U6', 'U6', 'U6']),
  importedRow('RotateKeyOnDemand', (f) => ({ KeyId: f.keyId }), ['NP', 'D', 'S', 'P'], 'no material pending rotation'),
  importedRow('ListKeyRotations', (f) => ({ KeyId: f.keyId }), ['ok', 'ok', 'ok', 'ok']),
  importedRow('CancelKeyDeletion', (f) => ({ KeyId: f.keyId }), ['S4', 'S4', 'ok', 'S4']),
  importedRow('Decrypt', (f) => ({ CiphertextBlob: f.blob }), ['ok', 'D', 'S', 'P']),
];

describe('Key state x operation matrix (kms-protocol.md §5)', () => {
  let gw: Harness;
  let n = 0;
  before(async () => {
    gw = await startGateway(integration().hsm);
  });
  after(() => gw.close());

  const call = (op: string, body: unknown) => rawCall(gw.url, `TrentService.${op}`, JSON.stringify(body));

  /** An imported key with its material, and the token and encrypted material to import it again. */
  async function importedKey(): Promise<{ keyId: string; importToken: string; encryptedMaterial: string }> {
    const keyId = (await call('CreateKey', { Origin: 'EXTERNAL' })).json!.KeyMetadata.KeyId as string;
    const params = (await call('GetParametersForImport', { KeyId: keyId, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' })).json!;
    const encrypted = wrapKeyMaterial(Buffer.from(params.PublicKey as string, 'base64'), 'RSAES_OAEP_SHA_1', crypto.randomBytes(32));
    const imported = { keyId, importToken: params.ImportToken as string, encryptedMaterial: encrypted.toString('base64') };
    const res = await call('ImportKeyMaterial', { KeyId: keyId, ImportToken: imported.importToken, EncryptedKeyMaterial: imported.encryptedMaterial, ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' });
    assert.equal(res.status, 200, res.text);
    return imported;
  }

  /** A key in `state`, a ciphertext made under it while it was Enabled, an alias on it, and an Enabled other key. */
  async function fixture(state: State, isImported: boolean): Promise<Fixture> {
    const imported = isImported || state === 'PendingImport' ? await importedKey() : { keyId: (await call('CreateKey', {})).json!.KeyMetadata.KeyId as string, importToken: 'AA==', encryptedMaterial: 'AA==' };
    const { keyId } = imported;
    const other = (await call('CreateKey', {})).json!.KeyMetadata.KeyId as string;
    const alias = `alias/matrix-${++n}`;
    await call('CreateAlias', { AliasName: alias, TargetKeyId: keyId });
    await call('CreateAlias', { AliasName: `${alias}-other`, TargetKeyId: other });
    const blob = (await call('Encrypt', { KeyId: keyId, Plaintext: 'AQID' })).json!.CiphertextBlob as string;
    const otherBlob = (await call('Encrypt', { KeyId: other, Plaintext: 'AQID' })).json!.CiphertextBlob as string;
    if (state === 'Disabled') await call('DisableKey', { KeyId: keyId });
    if (state === 'PendingDeletion') await call('ScheduleKeyDeletion', { KeyId: keyId });
    if (state === 'PendingImport') await call('DeleteImportedKeyMaterial', { KeyId: keyId });
    return { ...imported, other, blob, otherBlob, alias };
  }

  for (const { op, note, body, outcomes, imported } of MATRIX) {
    for (const state of ['Enabled', 'Disabled', 'PendingDeletion', 'PendingImport'] as const) {
      it(`${op}${note ? ` (${note})` : ''} on ${imported ? 'an imported' : 'a'} ${state} key: ${outcomes[state]}`, async () => {
        const f = await fixture(state, imported === true);
        const res = await call(op, body(f));
        const arn = `arn:verenc:111122223333:key/${f.keyId}`;
        const expected = {
          ok: undefined,
          D: { __type: 'DisabledException', message: `${arn} is disabled.` },
          S: { __type: 'KMSInvalidStateException', message: `${arn} is pending deletion.` },
          S4: { __type: 'KMSInvalidStateException', message: `${arn} is not pending deletion.` },
          P: { __type: 'KMSInvalidStateException', message: `${arn} is pending import.` },
          U6: { __type: 'UnsupportedOperationException', message: `${arn} origin is EXTERNAL which is not valid for this operation.` },
          UA: { __type: 'UnsupportedOperationException', message: `${arn} origin is AWS_KMS which is not valid for this operation.` },
          NP: { __type: 'KMSInvalidStateException', message: `No available key material pending rotation for the key: ${arn}.` },
        }[outcomes[state]];
        if (expected === undefined) assert.equal(res.status, 200, res.text);
        else assert.deepEqual([res.status, res.json], [400, expected]);
      });
    }
  }
});

/**
 * The same matrix for a multi-Region primary (QKMS_REGIONS, AWS ARNs), with the states only such a
 * key has and the operations only it takes: Enabled, Disabled and PendingReplicaDeletion with a
 * replica in us-west-2, PendingDeletion without one (a primary with replicas waits for them).
 *   SR: KMSInvalidStateException "<ARN> is pending replica deletion."
 */
type MrkState = 'Enabled' | 'Disabled' | 'PendingDeletion' | 'PendingReplicaDeletion';
type MrkOutcome = 'ok' | 'D' | 'S' | 'S4' | 'SR';
const MRK_MATRIX: Array<{ op: string; body: (keyId: string) => Record<string, unknown>; outcomes: MrkOutcome[] }> = [
  { op: 'Encrypt', body: (k) => ({ KeyId: k, Plaintext: 'AA==' }), outcomes: ['ok', 'D', 'S', 'SR'] },
  { op: 'GenerateDataKey', body: (k) => ({ KeyId: k, KeySpec: 'AES_256' }), outcomes: ['ok', 'D', 'S', 'SR'] },
  { op: 'CreateGrant', body: (k) => ({ KeyId: k, GranteePrincipal: 'arn:aws:iam::111122223333:role/r', Operations: ['Decrypt'] }), outcomes: ['ok', 'D', 'S', 'SR'] },
  { op: 'EnableKey', body: (k) => ({ KeyId: k }), outcomes: ['ok', 'ok', 'S', 'SR'] },
  { op: 'DisableKey', body: (k) => ({ KeyId: k }), outcomes: ['ok', 'ok', 'S', 'SR'] },
  { op: 'ScheduleKeyDeletion', body: (k) => ({ KeyId: k }), outcomes: ['ok', 'ok', 'S', 'SR'] },
  { op: 'CancelKeyDeletion', body: (k) => ({ KeyId: k }), outcomes: ['S4', 'S4', 'ok', 'ok'] },
  { op: 'TagResource', body: (k) => ({ KeyId: k, Tags: [{ TagKey: 'k', TagValue: 'v' }] }), outcomes: ['ok', 'ok', 'S', 'SR'] },
  { op: 'UpdateKeyDescription', body: (k) => ({ KeyId: k, Description: 'd' }), outcomes: ['ok', 'ok', 'S', 'SR'] },
  { op: 'EnableKeyRotation', body: (k) => ({ KeyId: k }), outcomes: ['ok', 'D', 'S', 'SR'] },
  { op: 'RotateKeyOnDemand', body: (k) => ({ KeyId: k }), outcomes: ['ok', 'D', 'S', 'SR'] },
  { op: 'GetKeyRotationStatus', body: (k) => ({ KeyId: k }), outcomes: ['ok', 'ok', 'ok', 'ok'] },
  { op: 'DescribeKey', body: (k) => ({ KeyId: k }), outcomes: ['ok', 'ok', 'ok', 'ok'] },
  { op: 'ReplicateKey', body: (k) => ({ KeyId: k, ReplicaRegion: 'eu-west-1' }), outcomes: ['ok', 'ok', 'S', 'SR'] },
  { op: 'UpdatePrimaryRegion', body: (k) => ({ KeyId: k, PrimaryRegion: 'us-west-2' }), outcomes: ['ok', 'ok', 'S', 'SR'] },
];

describe('Key state x operation matrix for a multi-Region primary', () => {
  let gw: Harness;
  before(async () => {
    gw = await startGateway(integration().hsm, { QKMS_REGIONS: 'us-east-1,us-west-2,eu-west-1', QKMS_ARN_FORMAT: 'aws' });
  });
  after(() => gw.close());

  const call = (op: string, body: unknown) => rawCall(gw.url, `TrentService.${op}`, JSON.stringify(body));

  async function primaryIn(state: MrkState): Promise<string> {
    const keyId = (await call('CreateKey', { MultiRegion: true })).json!.KeyMetadata.KeyId as string;
    if (state !== 'PendingDeletion') assert.equal((await call('ReplicateKey', { KeyId: keyId, ReplicaRegion: 'us-west-2' })).status, 200);
    if (state === 'Disabled') await call('DisableKey', { KeyId: keyId });
    if (state === 'PendingDeletion' || state === 'PendingReplicaDeletion') {
      assert.equal((await call('ScheduleKeyDeletion', { KeyId: keyId })).json!.KeyState, state);
    }
    return keyId;
  }

  for (const { op, body, outcomes } of MRK_MATRIX) {
    (['Enabled', 'Disabled', 'PendingDeletion', 'PendingReplicaDeletion'] as const).forEach((state, i) => {
      it(`${op} on a multi-Region primary ${state}: ${outcomes[i]}`, async () => {
        const keyId = await primaryIn(state);
        const res = await call(op, body(keyId));
        const arn = `arn:aws:kms:us-east-1:111122223333:key/${keyId}`;
        const expected = {
          ok: undefined,
          D: { __type: 'DisabledException', message: `${arn} is disabled.` },
          S: { __type: 'KMSInvalidStateException', message: `${arn} is pending deletion.` },
          S4: { __type: 'KMSInvalidStateException', message: `${arn} is not pending deletion.` },
          SR: { __type: 'KMSInvalidStateException', message: `${arn} is pending replica deletion.` },
        }[outcomes[i]];
        if (expected === undefined) assert.equal(res.status, 200, res.text);
        else assert.deepEqual([res.status, res.json], [400, expected]);
      });
    });
  }
});
