import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Balancer {
  url: string;
  /** KMS requests each upstream answered, in upstream order. */
  served: number[];
  close(): Promise<void>;
}

/**
 * An HTTP load balancer in the test process, as HAProxy in deploy/haproxy.cfg is: every KMS
 * request (`POST /`) goes to the next upstream in turn, whatever connection it came on, with its
 * headers unchanged (the Host a client signed with SigV4 reaches the replica). Other requests
 * (/health, /ready, /metrics, the console's files) describe one process, as Prometheus scrapes each
 * replica directly: they go to `upstreams[0]`. `pinned()` sends KMS requests to `upstreams[0]` too
 * while it is true (a test that scripts faults into that replica's HSM).
 */
/** KMS requests of every balancer of the run: spread round-robin, or pinned to the first upstream. */
const tally = { spread: 0, pinned: 0 };
process.once('exit', () => {
  if (tally.spread + tally.pinned > 0) console.log(`balancer: ${tally.spread} KMS requests spread round-robin over the replicas, ${tally.pinned} pinned to the in-process replica (scripted faults or a moved clock)`);
});

export async function startBalancer(upstreams: string[], pinned: () => boolean = () => false): Promise<Balancer> {
  const agent = new http.Agent({ keepAlive: true });
  const served = upstreams.map(() => 0);
  let next = 0;
  const server = http.createServer((req, res) => {
    const isKms = req.method === 'POST' && (req.url ?? '/').split('?')[0] === '/';
    const isPinned = pinned();
    const index = isKms && !isPinned ? next++ % upstreams.length : 0;
    if (isKms) {
      served[index]++;
      tally[isPinned ? 'pinned' : 'spread']++;
    }
    const target = new URL(upstreams[index]);
    const upstream = http.request({ agent, hostname: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
      answer.pipe(res);
    });
    upstream.on('error', (err) => {
      if (res.headersSent) return res.destroy(err);
      res.writeHead(502, { 'content-type': 'text/plain' }).end(`balancer: upstream ${target.host}: ${err.message}`);
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    served,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      agent.destroy();
    },
  };
}
