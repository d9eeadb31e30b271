import cluster, { type Worker } from 'node:cluster';
import type { Logger } from './logging/logger';

/** A worker that dies this soon after it started, this many times in a row, is not started again. */
const EARLY_EXIT_MS = 10_000;
const EARLY_EXITS_TO_GIVE_UP = 3;
const RESTART_DELAY_MS = 1000;

/**
 * QKMS_WORKERS > 1: this (primary) process serves nothing itself. It starts `count` gateway
 * processes (node:cluster: they share the listening port, the primary hands out connections
 * round-robin), each a replica with its own PKCS#11 sessions, HSM thread and audit chain on the
 * shared PostgreSQL store. A worker that dies is started again after a second, unless it keeps
 * dying during its start (a configuration or token problem): then the primary stops every worker
 * and exits with that worker's exit code. SIGTERM/SIGINT are passed to every worker, and the
 * primary exits once all have stopped (each drains its requests and audit batch).
 */
export function superviseWorkers(count: number, logger: Logger, replicaId?: string): void {
  let isStopping = false;
  let earlyExits = 0;
  const startedAt = new Map<number, number>();
  /** Worker id -> its slot (1..count): a replacement takes the slot, and with it the audit chain, of the worker it replaces. */
  const slots = new Map<number, number>();

  const start = (slot: number) => {
    // A configured replica id is one chain per process: each slot gets its own, stable across restarts.
    const worker = cluster.fork(replicaId ? { QKMS_REPLICA_ID: `${replicaId}-${slot}` } : {});
    startedAt.set(worker.id, Date.now());
    slots.set(worker.id, slot);
    logger.info('worker started', { worker: worker.id, slot, pid: worker.process.pid });
  };

  cluster.on('exit', (worker: Worker, code: number | null, signal: string | null) => {
    const lived = Date.now() - (startedAt.get(worker.id) ?? 0);
    const slot = slots.get(worker.id) ?? 1;
    startedAt.delete(worker.id);
    slots.delete(worker.id);
    if (isStopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
      return;
    }
    earlyExits = lived < EARLY_EXIT_MS ? earlyExits + 1 : 0;
    logger.error('worker exited', { worker: worker.id, pid: worker.process.pid, code, signal, livedMs: lived });
    if (earlyExits >= EARLY_EXITS_TO_GIVE_UP) {
      logger.error('workers keep exiting during their start: stopping (see the worker log lines above)', { exits: earlyExits });
      isStopping = true;
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(code ?? 1);
      setTimeout(() => process.exit(code ?? 1), 30_000).unref();
      return;
    }
    setTimeout(() => !isStopping && start(slot), RESTART_DELAY_MS);
  });

  const stop = (signal: NodeJS.Signals) => {
    if (isStopping) return;
    isStopping = true;
    logger.info('stopping workers', { signal });
    const workers = Object.values(cluster.workers ?? {});
    if (workers.length === 0) process.exit(0);
    for (const w of workers) w?.process.kill(signal);
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));

  logger.info('starting workers', { workers: count });
  for (let slot = 1; slot <= count; slot++) start(slot);
}
