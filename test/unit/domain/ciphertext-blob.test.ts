import assert from 'node:assert/strict';
import { BlobMechanism, MAX_BLOB_BYTES, packGcm, packHeader, packKwpBody, unpackBlob } from '../../../src/domain/ciphertext-blob';
import { InvalidCiphertextException } from '../../../src/errors/kms-errors';

const KEY_ID = '1234abcd-12ab-34cd-56ef-1234567890ab';

describe('CiphertextBlob format v1', () => {
  const kwpBlob = () => {
    const header = packHeader({ mechanism: BlobMechanism.AesKwpHmac, keyId: KEY_ID, materialVersion: 3 });
    return Buffer.concat([packKwpBody(header, 32, Buffer.alloc(40, 0xaa)), Buffer.alloc(32, 0xbb)]);
  };

  it('lays out the header byte by byte as docs/crypto.md says', () => {
    const header = packHeader({ mechanism: BlobMechanism.AesKwpHmac, keyId: KEY_ID, materialVersion: 3 });
    assert.equal(header.toString('hex'), '0101' + '1234abcd12ab34cd56ef1234567890ab' + '00000003');
  });

  it('round-trips a KWP+HMAC blob', () => {
    const parsed = unpackBlob(kwpBlob());
    assert.equal(parsed.mechanism, BlobMechanism.AesKwpHmac);
    assert.equal(parsed.keyId, KEY_ID);
    assert.equal(parsed.materialVersion, 3);
    if (parsed.mechanism !== BlobMechanism.AesKwpHmac) throw new Error('mechanism');
    assert.equal(parsed.dataKeyLength, 32);
    assert.deepEqual(parsed.wrapped, Buffer.alloc(40, 0xaa));
    assert.deepEqual(parsed.mac, Buffer.alloc(32, 0xbb));
    assert.equal(parsed.macInput.length, 22 + 4 + 40);
  });

  it('marks a multi-Region key in the mechanism byte (0x80) and reads its mrk- id back; the mark is in the authenticated header', () => {
    const mrk = `mrk-${'0123456789abcdef'.repeat(2)}`;
    const header = packHeader({ mechanism: BlobMechanism.AesGcm, keyId: mrk, materialVersion: 2 });
    assert.equal(header.toString('hex'), '0182' + '0123456789abcdef'.repeat(2) + '00000002');
    const parsed = unpackBlob(packGcm(header, Buffer.alloc(12, 1), Buffer.alloc(48, 2)));
    assert.deepEqual([parsed.mechanism, parsed.keyId, parsed.materialVersion], [BlobMechanism.AesGcm, mrk, 2]);
    assert.deepEqual(parsed.header, header);
    // The same 16 bytes without the mark name a UUID key: another key, so the HSM's check fails.
    const unmarked = Buffer.from(header);
    unmarked[1] = BlobMechanism.AesGcm;
    assert.equal(unpackBlob(packGcm(unmarked, Buffer.alloc(12, 1), Buffer.alloc(48, 2))).keyId, '01234567-89ab-cdef-0123-456789abcdef');
  });

  it('round-trips a GCM blob', () => {
    const header = packHeader({ mechanism: BlobMechanism.AesGcm, keyId: KEY_ID, materialVersion: 1 });
    const parsed = unpackBlob(packGcm(header, Buffer.alloc(12, 1), Buffer.alloc(48, 2)));
    if (parsed.mechanism !== BlobMechanism.AesGcm) throw new Error('mechanism');
    assert.deepEqual(parsed.iv, Buffer.alloc(12, 1));
    assert.deepEqual(parsed.ciphertextAndTag, Buffer.alloc(48, 2));
  });

  it('rejects every truncation, an extra byte, unknown versions and mechanisms, version 0, and oversized blobs', () => {
    const blob = kwpBlob();
    const rejects = (b: Buffer) => assert.throws(() => unpackBlob(b), InvalidCiphertextException, b.toString('hex'));
    for (let n = 0; n < blob.length; n++) rejects(blob.subarray(0, n));
    rejects(Buffer.concat([blob, Buffer.from([0])]));
    for (const [at, value] of [[0, 2], [0, 0], [1, 0], [1, 3]] as const) {
      const bad = Buffer.from(blob);
      bad[at] = value;
      rejects(bad);
    }
    const v0 = Buffer.from(blob);
    v0.writeUInt32BE(0, 18);
    rejects(v0);
    const badLength = Buffer.from(blob);
    badLength.writeUInt16BE(0, 22);
    rejects(badLength);
    rejects(Buffer.alloc(MAX_BLOB_BYTES + 1, 1));
  });

  it('keeps the largest data key (1024 bytes) well inside 6144 bytes', () => {
    const header = packHeader({ mechanism: BlobMechanism.AesKwpHmac, keyId: KEY_ID, materialVersion: 1 });
    const size = packKwpBody(header, 1024, Buffer.alloc(1032)).length + 32;
    assert.equal(size, 1090);
  });
});
