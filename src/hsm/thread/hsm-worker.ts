import { parentPort, workerData } from 'node:worker_threads';
import { HSM_CALLS, HSM_STATS_INTERVAL_MS } from '../hsm';
import { Pkcs11Hsm } from '../pkcs11/pkcs11-hsm';
import { reviveBuffers, toWire, type Reply, type Request, type ThreadOptions } from './protocol';

/**
 * The HSM thread: owns the PKCS#11 module (one C_Initialize per process, pkcs11-and-clients.md
 * §1.4) and runs every call synchronously here, off the event loop that serves HTTP. Requests are
 * answered in arrival order; the self-healing of Pkcs11Hsm (session retry, re-login, circuit
 * breaker with C_Finalize/C_Initialize) runs inside this thread unchanged, except that C_Finalize
 * waits while a thread abandoned before this one may still be inside the module (mayFinalize).
 */
const port = parentPort!;
const CALLABLE = new Set<string>([...HSM_CALLS, 'health', 'close']);
const post = (reply: Reply) => port.postMessage(reply);

async function run(): Promise<void> {
  const options = workerData as ThreadOptions;
  let hsm: Pkcs11Hsm;
  try {
    hsm = await Pkcs11Hsm.open({
      ...options,
      onStateChange: (isUp, detail) => post({ type: 'state', isUp, detail }),
      onRecycle: (reason, objects, ms) => post({ type: 'recycled', reason, objects, ms }),
    });
  } catch (err) {
    post({ type: 'error', error: toWire(err) });
    return;
  }
  port.on('message', (req: Request) => {
    if ('mayFinalize' in req) return hsm.setMayFinalize(req.mayFinalize);
    void (async () => {
      try {
        if (!CALLABLE.has(req.method)) throw new Error(`no such HSM method: ${req.method}`);
        const method = (hsm as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[req.method];
        const value = await method.apply(hsm, req.args.map(reviveBuffers));
        post({ type: 'result', id: req.id, value });
        if (req.method === 'close') port.close();
      } catch (err) {
        post({ type: 'error', id: req.id, error: toWire(err) });
      }
    })();
  });
  post({ type: 'ready', capabilities: hsm.capabilities() });
  // Pushed, not asked for: a request would queue behind the HSM work (and never be answered by a
  // stuck thread), while /metrics must answer at once. It is also the heartbeat the watchdog
  // listens for: silence means this thread is stuck in a synchronous call.
  const report = () => post({ type: 'stats', stats: hsm.stats() });
  report();
  setInterval(report, options.heartbeatMs ?? HSM_STATS_INTERVAL_MS).unref();
}

void run();
