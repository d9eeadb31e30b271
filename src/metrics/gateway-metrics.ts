import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client';
import { PKCS11_LATENCY_BUCKETS_SECONDS, type CallStats } from '../hsm/call-stats';
import type { HsmStats } from '../hsm/hsm';
import type { HsmErrorKind } from '../hsm/hsm-error';
import type { HsmCallObserver } from '../hsm/metered-hsm';

/** KMS requests take from under a millisecond (GenerateDataKey on SoftHSM2) to a minute (RSA-4096 CreateKey). */
const REQUEST_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Hsm calls: a PKCS#11 call or two, plus the hop to the HSM thread. */
const HSM_CALL_BUCKETS_SECONDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** An audit batch: one write, fdatasync and the anchor's commit (fractions of a millisecond on a local SSD). */
const AUDIT_COMMIT_BUCKETS_SECONDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
const AUDIT_BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 1000];

/**
 * The gateway's Prometheus metrics (docs/operations.md lists them), in a Registry of its own so
 * that several gateways in one process (the tests) do not collide. Labels carry only bounded,
 * non-secret values: operation names from the registry, KMS error types, Hsm method names, HsmError
 * kinds, C_* function names and CKR names — never key ids, principals, or request data.
 */
export class GatewayMetrics implements HsmCallObserver {
  readonly registry = new Registry();
  private readonly requests: Counter<'operation' | 'outcome'>;
  private readonly requestSeconds: Histogram<'operation'>;
  private readonly hsmSeconds: Histogram<'method'>;
  private readonly hsmErrors: Counter<'method' | 'kind'>;
  private readonly auditRecords: Counter;
  private readonly auditFailures: Counter;
  private readonly schedulerFailures: Counter<'work'>;
  /** Keys waiting for a retry of failed scheduled work; the scheduler sets it once it exists. */
  keysInBackoff: () => number = () => 0;
  private readonly auditBatchRecords: Histogram;
  private readonly auditCommitSeconds: Histogram;
  private scrapeStats?: HsmStats;

  /**
   * `hsmStats` is read at each scrape (Hsm.stats(): memory only, never the token). Unit tests turn
   * the process metrics off: each set starts an event-loop-delay monitor that lives as long as the process.
   */
  constructor(hsmStats: () => HsmStats, options: { hasProcessMetrics?: boolean } = {}) {
    const registers = [this.registry];
    // One Hsm.stats() per scrape (it merges every function's totals), shared by all the HSM metrics.
    const snapshot = () => (this.scrapeStats ??= hsmStats());
    if (options.hasProcessMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({ name: 'qkms_requests_total', help: 'KMS requests by operation and outcome ("success" or the KMS error type).', labelNames: ['operation', 'outcome'], registers });
    this.requestSeconds = new Histogram({ name: 'qkms_request_duration_seconds', help: 'KMS request latency, from arrival to the last byte of the answer.', labelNames: ['operation'], buckets: REQUEST_BUCKETS_SECONDS, registers });
    this.hsmSeconds = new Histogram({ name: 'qkms_hsm_call_duration_seconds', help: 'Latency of Hsm interface calls (one KMS operation makes one or more), failed ones included.', labelNames: ['method'], buckets: HSM_CALL_BUCKETS_SECONDS, registers });
    this.hsmErrors = new Counter({ name: 'qkms_hsm_call_errors_total', help: 'Failed Hsm interface calls by HsmError kind (integrity, key, session, device, auth, config, timeout, internal).', labelNames: ['method', 'kind'], registers });
    this.auditRecords = new Counter({ name: 'qkms_audit_records_total', help: 'Audit records written, durable and anchored.', registers });
    this.auditFailures = new Counter({ name: 'qkms_audit_write_failures_total', help: 'Audit records that could not be written (logged as AUDIT WRITE FAILED); their requests failed unless QKMS_AUDIT_FAIL_OPEN.', registers });
    this.auditBatchRecords = new Histogram({ name: 'qkms_audit_batch_records', help: 'Records per audit batch (group commit: the records that arrived while the previous batch committed).', buckets: AUDIT_BATCH_BUCKETS, registers });
    this.auditCommitSeconds = new Histogram({ name: 'qkms_audit_commit_duration_seconds', help: 'Time to commit one audit batch: HSM HMACs, one write, fdatasync, the anchor in the key store.', buckets: AUDIT_COMMIT_BUCKETS_SECONDS, registers });
    this.schedulerFailures = new Counter({ name: 'qkms_scheduler_failures_total', help: 'Scheduled key work that failed and will be retried with backoff, by kind (deletion, rotation, rollback of a stale intent).', labelNames: ['work'], registers });
    const metrics = this;
    new Gauge({ name: 'qkms_scheduler_keys_in_backoff', help: 'Keys whose scheduled work failed and waits for its retry.', registers, collect() { this.set(metrics.keysInBackoff()); } });
    const gauge = (name: string, help: string, value: (s: HsmStats) => number) =>
      new Gauge({ name, help, registers, collect() { this.set(value(snapshot())); } });
    gauge('qkms_hsm_token_up', '1 while the circuit breaker is closed (the token answers), 0 while it is open and reconnecting.', (s) => (s.isUp ? 1 : 0));
    gauge('qkms_pkcs11_sessions', 'PKCS#11 sessions in the pool.', (s) => s.sessions.size);
    gauge('qkms_pkcs11_sessions_in_use', 'PKCS#11 sessions lent to a call right now.', (s) => s.sessions.inUse);
    gauge('qkms_pkcs11_session_waiters', 'Calls waiting for a free PKCS#11 session.', (s) => s.sessions.waiters);
    gauge('qkms_hsm_queued_calls', 'Hsm calls sent to the HSM thread and not answered yet (0 with QKMS_HSM_THREAD=false).', (s) => s.queuedCalls);
    register(this.registry, { name: 'qkms_pkcs11_call_duration_seconds', help: 'Latency of each PKCS#11 function call (C_WrapKey, C_Sign…), failed ones included.', type: 'histogram' }, () => histogramValues('qkms_pkcs11_call_duration_seconds', snapshot().pkcs11));
    register(this.registry, { name: 'qkms_pkcs11_call_errors_total', help: 'Failed PKCS#11 function calls by CKR code.', type: 'counter' }, () => errorValues(snapshot().pkcs11));
  }

  request(operation: string, outcome: string, seconds: number): void {
    this.requests.inc({ operation, outcome });
    this.requestSeconds.observe({ operation }, seconds);
  }

  hsmCall(method: string, seconds: number, errorKind?: HsmErrorKind): void {
    this.hsmSeconds.observe({ method }, seconds);
    if (errorKind) this.hsmErrors.inc({ method, kind: errorKind });
  }

  schedulerFailure(work: string): void {
    this.schedulerFailures.inc({ work });
  }

  auditBatch({ records, seconds, isWritten }: { records: number; seconds: number; isWritten: boolean }): void {
    if (!isWritten) {
      this.auditFailures.inc(records);
      return;
    }
    this.auditRecords.inc(records);
    this.auditBatchRecords.observe(records);
    this.auditCommitSeconds.observe(seconds);
  }

  /** The Prometheus text exposition format. */
  async render(): Promise<{ contentType: string; body: string }> {
    try {
      return { contentType: this.registry.contentType, body: await this.registry.metrics() };
    } finally {
      this.scrapeStats = undefined;
    }
  }
}

interface Sample {
  metricName?: string;
  labels: Record<string, string | number>;
  value: number;
}

/**
 * A metric computed at scrape time from cumulative totals kept elsewhere (the PKCS#11 layer, maybe
 * in the HSM thread): prom-client's Histogram only takes single observations, so this speaks its
 * registry's metric shape directly.
 */
function register(registry: Registry, meta: { name: string; help: string; type: 'histogram' | 'counter' }, values: () => Sample[]): void {
  const metric = { ...meta, aggregator: 'sum', get: async () => ({ ...meta, aggregator: 'sum', values: values() }) };
  registry.registerMetric(metric as unknown as Metric);
}

function histogramValues(name: string, calls: CallStats): Sample[] {
  return Object.entries(calls).flatMap(([fn, s]): Sample[] => {
    let cumulative = 0;
    const buckets = PKCS11_LATENCY_BUCKETS_SECONDS.map((le, i) => ({ metricName: `${name}_bucket`, labels: { function: fn, le }, value: (cumulative += s.buckets[i]) }));
    return [
      ...buckets,
      { metricName: `${name}_bucket`, labels: { function: fn, le: '+Inf' }, value: s.count },
      { metricName: `${name}_sum`, labels: { function: fn }, value: s.sumSeconds },
      { metricName: `${name}_count`, labels: { function: fn }, value: s.count },
    ];
  });
}

function errorValues(calls: CallStats): Sample[] {
  return Object.entries(calls).flatMap(([fn, s]) => Object.entries(s.errors).map(([ckr, n]) => ({ labels: { function: fn, ckr }, value: n })));
}
