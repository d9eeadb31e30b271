import { loadConfig } from '../../src/config/load-config';
import { Envelope } from '../../src/domain/envelope';
import { MARKER_MAC_LABEL, MarkerCodec } from '../../src/domain/marker';
import { createLogger } from '../../src/logging/logger';
import type { GatewayDeps, OperationContext } from '../../src/operations/context';
import { SqliteKeyRepository } from '../../src/store/sqlite-key-repository';
import { FakeHsm } from './fake-hsm';

/** Gateway dependencies with FakeHsm and an in-memory SQLite store: no token, no socket. */
export async function unitDeps(env: Record<string, string> = {}): Promise<GatewayDeps & { fake: FakeHsm }> {
  const config = loadConfig(env);
  const fake = new FakeHsm();
  await fake.generateMacKey(MARKER_MAC_LABEL);
  return {
    fake,
    config,
    scope: { accountId: config.accountId, region: config.region, format: config.arnFormat },
    hsm: fake,
    keys: new SqliteKeyRepository(':memory:'),
    envelope: new Envelope(fake, config.dataKeyWrap),
    markers: new MarkerCodec(fake),
    clock: () => new Date('2026-11-29T12:00:00Z'),
    logger: createLogger({ level: 'error', silent: true }),
  };
}

export function operationContext(deps: GatewayDeps): OperationContext {
  return { deps, requestId: 'test-request', log: deps.logger, noteKey: () => undefined };
}
