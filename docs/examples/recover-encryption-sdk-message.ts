/**
 * Recovers AWS Encryption SDK messages whose encrypted data keys name their KMS key with an ARN
 * the SDK's own KMS keyrings refuse or no longer match (README "ARNs"): messages made while QKMS
 * printed `arn:verenc:<account>:key/<id>` (QKMS_ARN_FORMAT=verenc), read after the switch to
 * `aws`, and messages made under `aws`, read by a gateway that prints verenc ARNs.
 *
 * Why the SDK's KmsKeyringNode cannot read them (@aws-crypto/kms-keyring 5.x, kms_keyring.js):
 * - It decrypts only the data keys whose provider info (the ARN KMS returned at encryption) is
 *   *equal, as text,* to one of its configured key ids. A keyring cannot be built with a verenc
 *   ARN ("Malformed arn.": the SDK wants six parts and service `kms`), and its `aws` ARN is not
 *   equal to the verenc one, so no data key is tried: "unencryptedDataKey has not been set".
 * - A discovery keyring tries every data key but first parses its ARN to pick a client's region,
 *   which fails on a verenc ARN ("Malformed arn.").
 * - After a successful Decrypt it requires the response's KeyId to equal the provider info, as
 *   text; QKMS answers with the ARN of the format in effect now, so a message made under the
 *   other format fails there ("KMS Decryption key does not match the requested key id.").
 *
 * This keyring compares key *ids* (the UUID or mrk- id after `key/`), not ARN text: for each
 * data key with provider id `aws-kms` whose key id is one you allow, it calls KMS Decrypt with
 * the data key's ciphertext, the message's encryption context and the bare key id as KeyId (so
 * QKMS refuses a ciphertext of any other key), and checks the key id of the answer. It only
 * decrypts; write new messages with KmsKeyringNode and an `aws` key ARN (what `--reencrypt-to`
 * below does).
 *
 * Run (endpoint and credentials as for any AWS client; the message is read whole into memory):
 *   AWS_ENDPOINT_URL_KMS=http://127.0.0.1:8080 AWS_REGION=us-east-1 \
 *   AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… \
 *   npx tsx docs/examples/recover-encryption-sdk-message.ts --in old.esdk --key <key id or ARN> \
 *     [--key …] [--reencrypt-to arn:aws:kms:<region>:<account>:key/<id>] --out new.esdk
 * Without --reencrypt-to it writes the plaintext; with it, a new message under that key (same
 * encryption context), which the SDK's KmsKeyringNode decrypts while QKMS_ARN_FORMAT=aws.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { DecryptCommand, KMSClient } from '@aws-sdk/client-kms';
import {
  buildClient,
  CommitmentPolicy,
  getClient,
  KeyringNode,
  KeyringTraceFlag,
  KMS,
  KmsKeyringNode,
  needs,
  type EncryptedDataKey,
  type NodeDecryptionMaterial,
  type NodeEncryptionMaterial,
} from '@aws-crypto/client-node';

const KMS_PROVIDER_ID = 'aws-kms';
// The id after `key/` in either ARN form, or a bare key id: arn:verenc:<account>:key/<id>,
// arn:<partition>:kms:<region>:<account>:key/<id>.
const KEY_ID = /^(?:arn:verenc:\d{12}:key\/|arn:[a-z-]+:kms:[a-z0-9-]+:\d{12}:key\/)?((?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}))$/;

/** The key id a key id or key ARN of either form names; undefined for anything else (aliases included). */
export function keyIdOf(keyIdOrArn: string): string | undefined {
  return KEY_ID.exec(keyIdOrArn)?.[1];
}

export interface AnyArnKmsKeyringOptions {
  /** A KMS client pointed at QKMS. */
  kms: KMSClient;
  /** The keys whose data keys may be decrypted: key ids or key ARNs of either form (not aliases). */
  keyIds: string[];
  grantTokens?: string[];
}

export class AnyArnKmsKeyring extends KeyringNode {
  private readonly kms: KMSClient;
  private readonly allowed: ReadonlySet<string>;
  private readonly grantTokens?: string[];

  constructor({ kms, keyIds, grantTokens }: AnyArnKmsKeyringOptions) {
    super();
    const ids = keyIds.map((k) => keyIdOf(k));
    needs(ids.length > 0 && ids.every((id) => id !== undefined), 'keyIds must be key ids or key ARNs (either form), at least one');
    this.kms = kms;
    this.allowed = new Set(ids as string[]);
    this.grantTokens = grantTokens;
  }

  async _onEncrypt(_material: NodeEncryptionMaterial): Promise<NodeEncryptionMaterial> {
    throw new Error('AnyArnKmsKeyring only decrypts: encrypt with KmsKeyringNode and an arn:aws:kms:… key ARN');
  }

  async _onDecrypt(material: NodeDecryptionMaterial, edks: EncryptedDataKey[]): Promise<NodeDecryptionMaterial> {
    const errors: string[] = [];
    for (const edk of edks) {
      const keyId = edk.providerId === KMS_PROVIDER_ID ? keyIdOf(edk.providerInfo) : undefined;
      if (!keyId || !this.allowed.has(keyId)) continue;
      try {
        const out = await this.kms.send(
          new DecryptCommand({ KeyId: keyId, CiphertextBlob: edk.encryptedDataKey, EncryptionContext: material.encryptionContext, GrantTokens: this.grantTokens }),
        );
        needs(out.Plaintext instanceof Uint8Array && typeof out.KeyId === 'string', 'Malformed KMS response.');
        // Compared by key id: the ARN's form follows QKMS_ARN_FORMAT, the key does not.
        needs(keyIdOf(out.KeyId!) === keyId, `KMS decrypted with ${out.KeyId}, not key ${keyId}`);
        const trace = { keyNamespace: KMS_PROVIDER_ID, keyName: out.KeyId!, flags: KeyringTraceFlag.WRAPPING_KEY_DECRYPTED_DATA_KEY | KeyringTraceFlag.WRAPPING_KEY_VERIFIED_ENC_CTX };
        return material.setUnencryptedDataKey(new Uint8Array(out.Plaintext!), trace);
      } catch (err) {
        // Another data key of the message may still decrypt, as in the SDK's KMS keyring.
        errors.push(`${edk.providerInfo}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    needs(errors.length === 0, `Unable to decrypt a data key: ${errors.join('; ')}`);
    return material;
  }
}

/** The encryption context a caller gave: without the key the SDK adds itself for signing suites. */
function callerContext(context: Record<string, string>): Record<string, string> {
  const { 'aws-crypto-public-key': _signingKey, ...rest } = context;
  return rest;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { in: { type: 'string' }, out: { type: 'string' }, key: { type: 'string', multiple: true }, 'reencrypt-to': { type: 'string' } },
  });
  if (!values.in || !values.out || !values.key?.length) {
    throw new Error('usage: recover-encryption-sdk-message.ts --in <message> --out <file> --key <key id or ARN> [--key …] [--reencrypt-to <aws key ARN>]');
  }
  const { encrypt, decrypt } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
  // The endpoint, region and credentials come from the environment (AWS_ENDPOINT_URL_KMS,
  // AWS_REGION, AWS_ACCESS_KEY_ID…), as for the AWS CLI.
  const keyring = new AnyArnKmsKeyring({ kms: new KMSClient({}), keyIds: values.key });
  const { plaintext, messageHeader } = await decrypt(keyring, fs.readFileSync(values.in));
  const target = values['reencrypt-to'];
  if (!target) return fs.writeFileSync(values.out, plaintext);
  const writer = new KmsKeyringNode({ generatorKeyId: target, clientProvider: getClient(KMS, {}) });
  const { result } = await encrypt(writer, plaintext, { encryptionContext: callerContext(messageHeader.encryptionContext) });
  fs.writeFileSync(values.out, result);
}

// A function, not top-level await: tsx runs this .ts file as CommonJS (package.json has no "type").
if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  });
}
