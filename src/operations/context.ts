import type { KeyUsageTracker } from '../domain/key-usage';
import type JoiBase from 'joi';
import type { AuditTrail } from '../audit/audit-trail';
import type { Principal, PrincipalStore } from '../auth/principals';
import type { Config } from '../config/load-config';
import type { ArnScope } from '../domain/arn';
import type { Envelope } from '../domain/envelope';
import type { TokenPool } from '../store/token-pool';
import type { KeyRepository } from '../domain/key-repository';
import type { MarkerCodec } from '../domain/marker';
import type { Hsm } from '../hsm/hsm';
import type { Logger } from '../logging/logger';
import type { GatewayMetrics } from '../metrics/gateway-metrics';

/** Everything an operation may use, built once at start-up (main.ts or a test) and injected. */
export interface GatewayDeps {
  config: Config;
  scope: ArnScope;
  hsm: Hsm;
  keys: KeyRepository;
  envelope: Envelope;
  markers: MarkerCodec;
  principals: PrincipalStore;
  audit: AuditTrail;
  /** Key lifecycle time (deletion dates, rotation); tests move it. SigV4 always uses the wall clock. */
  clock: () => Date;
  logger: Logger;
  metrics: GatewayMetrics;
  /** What start-up did (reconciliation with the token, the seed file); /ready reports it. */
  startup: string;
  /** Where per-principal rate limits draw from: this process, or the store the replicas share. Unset: this process. */
  rateBuckets?: TokenPool;
  /** Each key's last cryptographic operation, noted by dispatch (GetKeyLastUsage). Unset: nothing is noted. */
  usage?: KeyUsageTracker;
}

/**
 * The gateway as one served region sees it (QKMS_REGIONS): the same parts, with the region's ARN
 * scope and its view of the key store. Built once per region (dispatch, the scheduler); the home
 * region's is `deps` itself.
 */
export function regionalDeps(deps: GatewayDeps): ReadonlyMap<string, GatewayDeps> {
  return new Map(deps.config.regions.map((region) => [region, inRegion(deps, region)]));
}

/** The gateway as `region` sees it (ReplicateKey and UpdatePrimaryRegion reach the other region's record). */
export function inRegion(deps: GatewayDeps, region: string): GatewayDeps {
  return region === deps.scope.region ? deps : { ...deps, scope: { ...deps.scope, region }, keys: deps.keys.inRegion(region) };
}

export interface OperationContext {
  deps: GatewayDeps;
  requestId: string;
  /** The verified signer of the request. */
  principal: Principal;
  log: Logger;
  /** Records the key ARN for the request's log line. */
  noteKey(keyArn: string): void;
}

export interface Operation<I = any, O = unknown> {
  schema: JoiBase.ObjectSchema;
  /** Resolves to the response body, or undefined for operations whose success body is empty. */
  handle(input: I, ctx: OperationContext): Promise<O | undefined>;
}

export const epochSeconds = (d: Date): number => d.getTime() / 1000;
