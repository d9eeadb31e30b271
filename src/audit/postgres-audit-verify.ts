import { Client } from 'pg';
import type { Hsm } from '../hsm/hsm';
import { auditMac } from './audit-mac';
import { verifyChains, type ChainVerification } from './postgres-audit-chain';

export interface DeploymentVerification {
  isIntact: boolean;
  chains: Array<Omit<ChainVerification, 'end'>>;
}

/**
 * Every replica's chain in the shared database (`qkms audit verify` with QKMS_STORE_URL), each
 * record, batch row (its HSM HMAC included) and anchor, in one read-only snapshot beside the
 * running replicas. It creates nothing: a database without the audit tables has no chain.
 */
export async function verifyPostgresTrail(url: string, hsm: Hsm): Promise<DeploymentVerification> {
  const client = new Client({ connectionString: url, application_name: 'qkms-audit-verify' });
  await client.connect();
  try {
    const { rows } = await client.query<{ exists: boolean }>("SELECT to_regclass('audit_chains') IS NOT NULL AS exists");
    const chains = rows[0]?.exists ? await verifyChains(client, auditMac(hsm)) : [];
    return { isIntact: chains.every((c) => c.isIntact), chains: chains.map(({ end: _, ...c }) => c) };
  } finally {
    await client.end();
  }
}

/** One line per chain, for people: `qkms audit verify` prints it. */
export function describeDeployment(r: DeploymentVerification): string {
  if (r.chains.length === 0) return 'audit trail intact: no chain yet (no replica has written to this database)';
  const lines = r.chains.map((c) => {
    if (!c.isIntact) return `AUDIT TRAIL TAMPERED: chain ${c.replicaId}${c.firstBad!.seq !== undefined ? ` (seq ${c.firstBad!.seq})` : ''}: ${c.firstBad!.reason}`;
    return `chain ${c.replicaId} intact: ${c.records} records in ${c.batches} signed batches, anchored up to seq ${c.anchoredSeq}`;
  });
  const bad = r.chains.filter((c) => !c.isIntact).length;
  return [...lines, bad ? `${bad} of ${r.chains.length} chains do not verify` : `all ${r.chains.length} chains intact`].join('\n');
}
