// Asks GET <url> <perSecond> times a second for <seconds>, one request at a time, as an
// orchestrator's probe would, and prints {p50, p99, max, errors} in ms. Its own process, so that
// the load generator's event loop does not add to the latencies it measures.
const http = require('node:http');
const [url, perSecond, seconds] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const agent = new http.Agent({ keepAlive: true });
(async () => {
  const latencies = [];
  let errors = 0;
  for (const end = performance.now() + seconds * 1000; performance.now() < end; ) {
    const started = performance.now();
    const ok = await new Promise((resolve) => {
      http.get(url, { agent }, (res) => res.resume().on('end', () => resolve(res.statusCode === 200))).on('error', () => resolve(false));
    });
    latencies.push(performance.now() - started);
    if (!ok) errors++;
    await new Promise((r) => setTimeout(r, Math.max(0, 1000 / perSecond - (performance.now() - started))));
  }
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (q) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] * 10) / 10;
  process.stdout.write(JSON.stringify({ p50: at(0.5), p99: at(0.99), max: at(1), errors }));
})();
