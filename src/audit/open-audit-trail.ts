import path from 'node:path';
import type { Config } from '../config/load-config';
import type { Logger } from '../logging/logger';
import { AuditLog } from './audit-log';
import type { AuditMac } from './audit-mac';
import type { AnchorStore } from './audit-startup';
import type { AuditTrail } from './audit-trail';
import { PostgresAuditLog } from './postgres-audit-log';

/**
 * The audit trail of the configured store: with QKMS_STORE_URL, this replica's chain in the shared
 * PostgreSQL database; otherwise the files in QKMS_DATA_DIR/audit, anchored in the SQLite store.
 * Either verifies before it opens and refuses a rewritten trail (AuditTrailRefused, exit 3).
 */
export function openAuditTrail(
  config: Config,
  parts: { mac: AuditMac; anchors: AnchorStore; logger: Logger },
  options: { isNewStore: boolean; onBatch?: (batch: { records: number; seconds: number; isWritten: boolean }) => void },
): Promise<AuditTrail> {
  if (config.storeUrl) {
    return PostgresAuditLog.open(config.storeUrl, parts, { isFailOpen: config.audit.isFailOpen, replicaId: config.audit.replicaId, onBatch: options.onBatch });
  }
  return AuditLog.open(path.join(config.dataDir, 'audit'), parts, { ...config.audit, ...options });
}
