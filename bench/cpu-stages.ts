/**
 * npm run bench:stages (and part of npm run bench) — where a GenerateDataKey's CPU goes: the
 * gateway runs with V8's sampling profiler (--cpu-prof) under GenerateDataKey at c=64, and each
 * sample of its event loop taken during the load is given to the stage of the innermost frame on
 * its stack that belongs to one (SigV4, Express, joi, winston, the audit trail, the store, the hop
 * to the HSM thread…). The HSM thread's own work is the process's CPU (/proc) minus the event
 * loop's. The profiler costs some CPU itself: the shares matter, the totals are a little high.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { CREDENTIALS, cpuSeconds, signedRequest, startGatewayProcess } from './gateway-process';

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);
const CONNECTIONS = 64;
const SAMPLE_INTERVAL_US = 500;

interface CallFrame { functionName: string; url: string }
interface ProfileNode { id: number; callFrame: CallFrame; children?: number[] }
interface Profile { nodes: ProfileNode[]; startTime: number; samples: number[]; timeDeltas: number[] }

/** Stages in the order they are looked for, frame by frame from the innermost: the first that matches names the sample. */
const STAGES: Array<[string, (f: CallFrame) => boolean]> = [
  ['garbage collection', (f) => f.functionName === '(garbage collector)'],
  ['hop to the HSM thread (postMessage, structured clone)', (f) => /\/hsm\/thread\/|node:internal\/worker/.test(f.url)],
  ['SigV4 (canonical request, HMAC)', (f) => /\/http\/(signature|sigv4)\./.test(f.url)],
  ['audit trail (records, group commit, anchor)', (f) => /\/audit\//.test(f.url)],
  ['key store and cache', (f) => /\/store\/|better-sqlite3/.test(f.url)],
  ['request validation (joi)', (f) => /node_modules\/joi\//.test(f.url)],
  ['logging (winston)', (f) => /node_modules\/(winston|logform|@colors|triple-beam)|\/logging\//.test(f.url)],
  ['KMS operation, policy, envelope', (f) => /\/(operations|domain|auth)\//.test(f.url)],
  ['Express, routing, body reading', (f) => /node_modules\/(express|router|body-parser|raw-body|finalhandler|send|type-is|on-finished|content-type|iconv-lite|qs)\/|\/(app|http|metrics)\/|\/app\./.test(f.url)],
  ['Node HTTP, sockets, streams', (f) => /^node:(_http|http|net|stream|events|internal\/(http|stream|streams|net|js_stream))/.test(f.url)],
  ['V8 and native (program)', (f) => f.functionName === '(program)'],
];
const OTHER = 'other JavaScript and native';

export interface StageRow { stage: string; msPerRequest: number; share: number }
export interface StagesResult { rps: number; requests: number; processMsPerRequest: number; eventLoopMsPerRequest: number; otherThreadsMsPerRequest: number; stages: StageRow[] }

export async function cpuStages(): Promise<StagesResult> {
  const profDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-bench-prof-'));
  const spawnedAt = Date.now();
  const gw = await startGatewayProcess({}, { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-interval=${SAMPLE_INTERVAL_US}`] });
  let window: { from: number; to: number };
  let load: autocannon.Result;
  let cpuMs: number;
  try {
    const kms = new KMSClient({ endpoint: gw.url, region: 'us-east-1', credentials: CREDENTIALS, maxAttempts: 1 });
    const keyId = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    kms.destroy();
    const gdk = await signedRequest(gw.url, 'GenerateDataKey', { KeyId: keyId, KeySpec: 'AES_256' });
    await autocannon({ url: gw.url, connections: CONNECTIONS, duration: 2, requests: [gdk] }); // warm up
    const cpu0 = cpuSeconds(gw.child.pid!);
    const from = Date.now();
    load = await autocannon({ url: gw.url, connections: CONNECTIONS, duration: DURATION_S, requests: [gdk] });
    window = { from, to: Date.now() };
    cpuMs = (cpuSeconds(gw.child.pid!) - cpu0) * 1000;
  } finally {
    await gw.stop(); // the profile is written as the process exits
  }
  const file = fs.readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error('the gateway wrote no CPU profile');
  const profile = JSON.parse(fs.readFileSync(path.join(profDir, file), 'utf8')) as Profile;
  fs.rmSync(profDir, { recursive: true, force: true });

  const byStage = attribute(profile, { from: window.from - spawnedAt, to: window.to - spawnedAt });
  const requests = load.requests.total;
  const eventLoopMs = [...byStage.values()].reduce((a, b) => a + b, 0);
  const stages = [...byStage].map(([stage, ms]) => ({ stage, msPerRequest: round(ms / requests), share: Math.round((ms / eventLoopMs) * 1000) / 10 })).sort((a, b) => b.msPerRequest - a.msPerRequest);
  return {
    rps: Math.round(load.requests.average),
    requests,
    processMsPerRequest: round(cpuMs / requests),
    eventLoopMsPerRequest: round(eventLoopMs / requests),
    otherThreadsMsPerRequest: round((cpuMs - eventLoopMs) / requests),
    stages,
  };
}

/**
 * Milliseconds of event-loop samples per stage within the window (ms since the process started;
 * the profile's clock starts with the process, the spawn time stands in for that start).
 */
function attribute(profile: Profile, window: { from: number; to: number }): Map<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stageOf = new Map<number, string | undefined>();
  const classify = (id: number): string | undefined => {
    if (stageOf.has(id)) return stageOf.get(id);
    const frame = byId.get(id)!.callFrame;
    if (frame.functionName === '(idle)') return undefined;
    const own = STAGES.find(([, test]) => test(frame))?.[0];
    const up = parent.get(id);
    const stage = own ?? (up === undefined ? OTHER : classify(up)) ?? OTHER;
    stageOf.set(id, stage);
    return stage;
  };
  const totals = new Map<string, number>();
  let t = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0;
    t += delta;
    const atMs = t / 1000;
    if (atMs < window.from || atMs > window.to) continue;
    const stage = classify(profile.samples[i]);
    if (stage) totals.set(stage, (totals.get(stage) ?? 0) + (profile.timeDeltas[i + 1] ?? SAMPLE_INTERVAL_US) / 1000);
  }
  return totals;
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

export function cpuStagesMarkdown(r: StagesResult): string {
  const lines = [
    `Where GenerateDataKey's CPU goes (c=${CONNECTIONS}, ${r.rps} req/s under the profiler): ${r.processMsPerRequest} ms per request in the gateway process, of which the event loop ${r.eventLoopMsPerRequest} ms and the HSM thread and other threads ${r.otherThreadsMsPerRequest} ms. The event loop by stage (V8 sampling profiler, the innermost frame that belongs to a stage):`,
    '',
    '| stage | ms per request | share of the event loop |',
    '|---|---|---|',
  ];
  for (const s of r.stages) lines.push(`| ${s.stage} | ${s.msPerRequest} | ${s.share} % |`);
  return lines.join('\n');
}

if (require.main === module) {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  cpuStages().then(
    (r) => process.stdout.write(`${cpuStagesMarkdown(r)}\n`),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
