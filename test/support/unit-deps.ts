import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AuditLog } from '../../src/audit/audit-log';
import { auditMac } from '../../src/audit/audit-mac';
import { AUDIT_MAC_KEY } from '../../src/audit/audit-record';
import { PrincipalStore } from '../../src/auth/principals';
import { loadConfig } from '../../src/config/load-config';
import { Envelope, envelopeModes } from '../../src/domain/envelope';
import { MARKER_MAC_KEY, MarkerCodec } from '../../src/domain/marker';
import { createLogger } from '../../src/logging/logger';
import { GatewayMetrics } from '../../src/metrics/gateway-metrics';
import type { GatewayDeps, OperationContext } from '../../src/operations/context';
import { SqliteKeyRepository } from '../../src/store/sqlite-key-repository';
import { FakeHsm } from './fake-hsm';

/** Gateway dependencies with FakeHsm and an in-memory SQLite store: no token, no socket. */
export async function unitDeps(env: Record<string, string> = {}): Promise<GatewayDeps & { fake: FakeHsm }> {
  const config = loadConfig(env);
  const fake = new FakeHsm();
  await fake.generateMacKey(MARKER_MAC_KEY);
  await fake.generateMacKey(AUDIT_MAC_KEY);
  const logger = createLogger({ level: 'error', silent: true });
  const keys = new SqliteKeyRepository(':memory:');
  const audit = await AuditLog.open(fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-unit-audit-')), { mac: auditMac(fake), anchors: keys, logger }, { maxSegmentBytes: 1 << 20, isFailOpen: false, isNewStore: true });
  return {
    fake,
    config,
    scope: { accountId: config.accountId, region: config.region, format: config.arnFormat },
    hsm: fake,
    keys,
    envelope: new Envelope(fake, envelopeModes(fake.capabilities(), config.dataKeyWrap)),
    markers: new MarkerCodec(fake),
    audit,
    principals: new PrincipalStore({ ...TEST_ADMIN, principalArn: `arn:aws:iam::${config.accountId}:root` }, undefined, createLogger({ level: 'error', silent: true })),
    clock: () => new Date('2026-11-29T12:00:00Z'),
    logger: createLogger({ level: 'error', silent: true }),
    metrics: new GatewayMetrics(() => fake.stats(), { hasProcessMetrics: false }),
    startup: 'unit tests',
  };
}

const TEST_ADMIN = { accessKeyId: 'AKIAQKMSUNITTEST0001', secretAccessKey: 'unit-test-secret-0123456789' };

export function operationContext(deps: GatewayDeps): OperationContext {
  const principal = { accessKeyId: TEST_ADMIN.accessKeyId, principalArn: `arn:aws:iam::${deps.config.accountId}:root` };
  return { deps, requestId: 'test-request', principal, log: deps.logger, noteKey: () => undefined };
}
