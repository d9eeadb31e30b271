import type { Request, Response } from 'express';
import type { GatewayDeps } from '../operations/context';

/** One check's result; `detail` says why when it failed. Never carries secrets: no PIN, key or data. */
export interface CheckResult {
  ok: boolean;
  detail: string;
}

/** The JSON body of /health and /ready (docs/operations.md). */
export interface ProbeBody {
  status: 'ok' | 'ready' | 'not ready' | 'starting';
  checks: Record<string, CheckResult>;
  /** "<check>: <detail>" for every failed check; empty when all passed. */
  reasons: string[];
}

/**
 * Probes cost the token (a call through a pooled session or the HSM thread) and the disk (the
 * store probe commits a write, an fsync), and anyone who reaches the port may poll them: each
 * check runs at most once per interval, and concurrent callers share the run in flight.
 */
const TOKEN_CHECK_EVERY_MS = 250;
const STORE_CHECK_EVERY_MS = 1000;
const STORE_PROBE_TIMEOUT_MS = 250;

/**
 * GET /health — liveness: the process answers (its event loop runs). Always 200: nothing the
 * process depends on is checked, because an orchestrator restarts a process whose liveness fails,
 * and a restart fixes neither an HSM outage nor a full disk — it would only restart every replica
 * at once. (A thread stuck in the PKCS#11 module does not stop the event loop: the HSM thread.)
 *
 * GET /ready — may this instance take KMS traffic: the token is up and logged in, the key store
 * takes a real write, and start-up (reconciliation with the token, the seed file) is done. 503 with
 * the reasons otherwise, including "restart needed" once the HSM layer gave up healing itself.
 */
export function probes(deps: GatewayDeps) {
  const tokenCheck = atMostEvery(TOKEN_CHECK_EVERY_MS, async (): Promise<CheckResult> => {
    const h = await deps.hsm.health().catch((err: unknown) => ({ isUp: false, detail: err instanceof Error ? err.message : 'health check failed' }));
    return { ok: h.isUp, detail: h.detail };
  });
  const storeCheck = atMostEvery(STORE_CHECK_EVERY_MS, async (): Promise<CheckResult> => {
    const started = performance.now();
    return deps.keys.probeWrite(STORE_PROBE_TIMEOUT_MS).then(
      () => ({ ok: true, detail: `a write committed in ${Math.round(performance.now() - started)} ms` }),
      (err: unknown) => ({ ok: false, detail: `the key store refused a write: ${err instanceof Error ? err.message : String(err)}` }),
    );
  });
  return {
    health(_req: Request, res: Response): void {
      res.status(200).json(liveness('serving'));
    },
    async ready(_req: Request, res: Response): Promise<void> {
      const [token, store] = await Promise.all([tokenCheck(), storeCheck()]);
      // Before start-up is done the starting app (starting.ts) answers, so here it always is.
      const startup = { ok: true, detail: deps.startup };
      const isReady = token.ok && store.ok && startup.ok;
      res.status(isReady ? 200 : 503).json(probeBody(isReady ? 'ready' : 'not ready', { token, store, startup }));
    },
  };
}

/** The body of /health (always with 200): the process answers; `phase` is 'starting' or 'serving'. */
export function liveness(phase: 'starting' | 'serving'): ProbeBody {
  return probeBody('ok', { process: { ok: true, detail: `up ${Math.round(process.uptime())} s, ${phase}` } });
}

/** `run` at most once per `ms` (counted from its start); callers in between share its result. */
function atMostEvery<T>(ms: number, run: () => Promise<T>): () => Promise<T> {
  let last: { at: number; result: Promise<T> } | undefined;
  return () => {
    const now = performance.now();
    if (!last || now - last.at >= ms) last = { at: now, result: run() };
    return last.result;
  };
}

function probeBody(status: ProbeBody['status'], checks: Record<string, CheckResult>): ProbeBody {
  return { status, checks, reasons: Object.entries(checks).filter(([, c]) => !c.ok).map(([name, c]) => `${name}: ${c.detail}`) };
}
