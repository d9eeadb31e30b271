import assert from 'node:assert/strict';
import { CallRecorder, mergeCallStats, PKCS11_LATENCY_BUCKETS_SECONDS } from '../../../src/hsm/call-stats';
import { FaultInjectingHsm } from '../../../src/hsm/fault-injecting-hsm';
import type { HsmErrorKind } from '../../../src/hsm/hsm-error';
import { withMetrics } from '../../../src/hsm/metered-hsm';
import { GatewayMetrics } from '../../../src/metrics/gateway-metrics';
import { FakeHsm } from '../../support/fake-hsm';

describe('PKCS#11 call statistics', () => {
  it('puts each call in the first bucket whose bound it does not exceed, and counts errors by CKR', () => {
    const r = new CallRecorder();
    r.record('C_WrapKey', 0.00004);
    r.record('C_WrapKey', 0.00005); // on the bound: that bucket (Prometheus le is inclusive)
    r.record('C_WrapKey', 0.0003, 'CKR_DEVICE_ERROR');
    r.record('C_WrapKey', 99);
    const s = r.snapshot().C_WrapKey;
    assert.equal(s.count, 4);
    assert.equal(s.buckets.length, PKCS11_LATENCY_BUCKETS_SECONDS.length + 1);
    assert.equal(s.buckets[0], 2);
    assert.equal(s.buckets[PKCS11_LATENCY_BUCKETS_SECONDS.indexOf(0.0005)], 1);
    assert.equal(s.buckets[PKCS11_LATENCY_BUCKETS_SECONDS.length], 1, 'slower than the last bound');
    assert.deepEqual(s.errors, { CKR_DEVICE_ERROR: 1 });
    assert.ok(Math.abs(s.sumSeconds - 99.00039) < 1e-9);
    assert.deepEqual(r.counts(), { C_WrapKey: 4 });
  });

  it("snapshots are copies, and merging adds two threads' totals", () => {
    const a = new CallRecorder();
    const b = new CallRecorder();
    a.record('C_Sign', 0.001, 'CKR_FUNCTION_FAILED');
    const snap = a.snapshot();
    a.record('C_Sign', 0.001);
    assert.equal(snap.C_Sign.count, 1, 'a snapshot does not move with the recorder');
    b.record('C_Sign', 0.001, 'CKR_FUNCTION_FAILED');
    b.record('C_Verify', 0.002);
    const m = mergeCallStats(a.snapshot(), b.snapshot());
    assert.equal(m.C_Sign.count, 3);
    assert.deepEqual(m.C_Sign.errors, { CKR_FUNCTION_FAILED: 2 });
    assert.equal(m.C_Verify.count, 1);
    assert.equal(a.snapshot().C_Sign.count, 2, 'merging leaves its inputs alone');
  });
});

describe('Metered Hsm', () => {
  it('reports every call with its latency, and failures with their HsmError kind', async () => {
    const seen: Array<[string, HsmErrorKind | undefined]> = [];
    const faults = new FaultInjectingHsm(new FakeHsm());
    const hsm = withMetrics(faults.hsm, { hsmCall: (method, seconds, kind) => (assert.ok(seconds >= 0), seen.push([method, kind])) });
    await hsm.randomBytes(4);
    faults.add({ method: 'randomBytes', times: 1, fail: { kind: 'session', ckr: 'CKR_SESSION_CLOSED' } });
    await assert.rejects(hsm.randomBytes(4));
    assert.deepEqual(seen, [['randomBytes', undefined], ['randomBytes', 'session']]);
    assert.equal(hsm.stats().isUp, true, 'stats pass through, synchronously');
  });
});

describe('GatewayMetrics', () => {
  it('renders the Prometheus text format with the labels it was given, in its own registry', async () => {
    const fake = new FakeHsm();
    const a = new GatewayMetrics(() => fake.stats(), { hasProcessMetrics: false });
    const b = new GatewayMetrics(() => fake.stats(), { hasProcessMetrics: false });
    a.request('Encrypt', 'success', 0.002);
    a.request('Encrypt', 'NotFoundException', 0.001);
    a.auditBatch({ records: 3, seconds: 0.0004, isWritten: true });
    a.auditBatch({ records: 2, seconds: 0.001, isWritten: false });
    const text = (await a.render()).body;
    assert.match(text, /^qkms_requests_total\{operation="Encrypt",outcome="success"\} 1$/m);
    assert.match(text, /^qkms_requests_total\{operation="Encrypt",outcome="NotFoundException"\} 1$/m);
    assert.match(text, /^qkms_request_duration_seconds_count\{operation="Encrypt"\} 2$/m);
    assert.match(text, /^qkms_audit_records_total 3$/m);
    assert.match(text, /^qkms_audit_write_failures_total 2$/m);
    assert.match(text, /^qkms_audit_batch_records_bucket\{le="4"\} 1$/m);
    assert.match(text, /^qkms_audit_commit_duration_seconds_count 1$/m);
    assert.match(text, /^qkms_hsm_token_up 1$/m);
    assert.doesNotMatch((await b.render()).body, /operation="Encrypt"/, "another gateway's registry is untouched");
  });
});
