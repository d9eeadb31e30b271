import type { Pool, PoolClient } from 'pg';

/**
 * The PostgreSQL store's schema migrations, applied in order; qkms_schema records each one that
 * ran. Append only. The first is the SQLite store's schema as of its sixth migration, in this
 * dialect: a PostgreSQL store starts there, so it has no rows of earlier releases to adopt (no
 * material without object ids, no version above last_version) and no legacy-id migration.
 * Timestamps are timestamptz (millisecond Dates in and out), binary is bytea, and the JSON kept
 * as text by SQLite is `json` (stored as given: grants come back byte for byte). Exported for the
 * upgrade tests: its first n entries are exactly the schema a release with n migrations wrote.
 */
export const MIGRATIONS: string[] = [
  `CREATE TABLE keys (
     position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
     key_id text NOT NULL UNIQUE,
     created_at timestamptz NOT NULL,
     description text NOT NULL,
     key_usage text NOT NULL,
     key_spec text NOT NULL,
     origin text NOT NULL,
     state text NOT NULL,
     deletion_date timestamptz,
     pending_window_days integer,
     deletion_started timestamptz,
     current_material_version integer NOT NULL,
     -- reserves version numbers: never reused, even by a rotation rolled back
     last_version integer NOT NULL DEFAULT 0,
     policy text,
     rotation_period_days integer,
     next_rotation_date timestamptz
   );
   CREATE TABLE key_materials (
     key_id text NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
     version integer NOT NULL,
     material_id text NOT NULL,
     created_at timestamptz NOT NULL,
     rotation_type text,
     object_ids json NOT NULL,
     PRIMARY KEY (key_id, version)
   );
   CREATE TABLE material_intents (
     intent_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
     key_id text NOT NULL,
     version integer NOT NULL,
     purpose text NOT NULL CHECK (purpose IN ('create', 'rotate')),
     rotation_type text,
     object_ids json NOT NULL,
     created_at timestamptz NOT NULL,
     abandoned_at timestamptz,
     UNIQUE (key_id, version)
   );
   CREATE TABLE tags (
     key_id text NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
     tag_key text NOT NULL,
     tag_value text NOT NULL,
     PRIMARY KEY (key_id, tag_key)
   );
   CREATE TABLE aliases (
     position bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
     alias_name text PRIMARY KEY,
     target_key_id text NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
     created_at timestamptz NOT NULL,
     last_updated_at timestamptz NOT NULL
   );
   CREATE INDEX aliases_by_target ON aliases (target_key_id);
   CREATE TABLE grants (
     position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
     grant_id text NOT NULL UNIQUE,
     key_id text NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
     name text,
     grantee_principal text NOT NULL,
     retiring_principal text,
     issuing_account text NOT NULL,
     operations json NOT NULL,
     constraints json,
     created_at timestamptz NOT NULL
   );
   CREATE INDEX grants_by_key ON grants (key_id, grantee_principal);
   CREATE INDEX grants_by_retiring ON grants (retiring_principal);
   CREATE TABLE grant_tokens (
     grant_id text NOT NULL REFERENCES grants(grant_id) ON DELETE CASCADE,
     token_hash bytea NOT NULL,
     PRIMARY KEY (grant_id, token_hash)
   );
   -- One row, rewritten by every readiness probe: a write that commits proves the store is writable.
   CREATE TABLE write_probe (id integer PRIMARY KEY CHECK (id = 1), at timestamptz NOT NULL);
   -- The audit trail's HSM-signed anchor. The row of NULLs lets the first gateway start adopt the
   -- trail as it finds it, exactly once; from then on the row is always set, and a missing row
   -- means tampering.
   CREATE TABLE audit_anchor (
     id integer PRIMARY KEY CHECK (id = 1),
     segment integer,
     end_offset bigint,
     seq bigint,
     head text,
     mac text
   );
   INSERT INTO audit_anchor (id) VALUES (1);`,
  // Per-principal rate-limit buckets every replica draws from (postgres-token-pool.ts).
  `CREATE TABLE rate_buckets (
     principal text PRIMARY KEY,
     tokens float8 NOT NULL,
     granted float8 NOT NULL,
     at timestamptz NOT NULL
   );`,
  // The process that recorded each intent (its ReplicaCoordination.ownerId): a replica's start-up
  // repair rolls back only the intents of replicas whose owner lease is free (gone).
  `ALTER TABLE material_intents ADD COLUMN owner text;`,
  // GetKeyLastUsage: each key's last successful cryptographic operation, and when recording began.
  `CREATE TABLE key_last_usage (
     key_id text PRIMARY KEY REFERENCES keys (key_id) ON DELETE CASCADE,
     operation text NOT NULL,
     used_at timestamptz NOT NULL,
     request_id text NOT NULL
   );
   CREATE TABLE usage_tracking (id integer PRIMARY KEY CHECK (id = 1), started_at timestamptz NOT NULL);
   INSERT INTO usage_tracking (id, started_at) VALUES (1, now());`,
  // Imported key material (BYOK): each version's import facts (NULL for generated material; deleted
  // material keeps object_ids '{}'); intents that import or discard material; GetParametersForImport's
  // wrapping key pairs, recorded before they are made. The purpose CHECK is the one the first
  // migration declared inline, under the name PostgreSQL gave it.
  `ALTER TABLE key_materials
     ADD COLUMN import_state text CHECK (import_state IN ('IMPORTED', 'PENDING_IMPORT')),
     ADD COLUMN expiration_model text,
     ADD COLUMN valid_to timestamptz,
     ADD COLUMN material_description text;
   CREATE INDEX key_materials_expiring ON key_materials (valid_to) WHERE import_state = 'IMPORTED';
   ALTER TABLE material_intents
     DROP CONSTRAINT material_intents_purpose_check,
     ADD CONSTRAINT material_intents_purpose_check CHECK (purpose IN ('create', 'rotate', 'import', 'discard'));
   CREATE TABLE import_parameters (
     position bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
     parameters_id text PRIMARY KEY,
     key_id text NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
     wrapping_key_spec text NOT NULL,
     wrapping_algorithm text NOT NULL,
     token_hash bytea NOT NULL,
     objects json NOT NULL,
     created_at timestamptz NOT NULL,
     valid_to timestamptz NOT NULL
   );
   CREATE INDEX import_parameters_by_key ON import_parameters (key_id);`,
  // Regions (QKMS_REGIONS): a key id has one record per region. The record and what hangs on it
  // (tags, aliases, grants, last usage) gain a region and reference the record by (key_id, region);
  // alias names are unique per region. Materials and import parameters are shared by every record
  // of the key id: they lose their foreign key (key_id alone is no longer unique), and deleteKey
  // removes them. Rows of earlier releases belong to the home region the migration runs with
  // (qkms.home_region, set by migrate): it is each region column's default too, so a replica of
  // the previous release still running during an upgrade creates its keys and tags there (its
  // upserts, whose conflict targets changed, fail until it is replaced).
  `DO $$
   DECLARE
     home text := current_setting('qkms.home_region');
     t text;
   BEGIN
     FOREACH t IN ARRAY ARRAY['keys', 'tags', 'aliases', 'grants', 'key_last_usage'] LOOP
       EXECUTE format('ALTER TABLE %I ADD COLUMN region text NOT NULL DEFAULT %L', t, home);
     END LOOP;
   END $$;
   ALTER TABLE keys ADD COLUMN primary_region text;
   ALTER TABLE key_materials DROP CONSTRAINT key_materials_key_id_fkey;
   ALTER TABLE import_parameters DROP CONSTRAINT import_parameters_key_id_fkey;
   ALTER TABLE tags DROP CONSTRAINT tags_key_id_fkey, DROP CONSTRAINT tags_pkey;
   ALTER TABLE aliases DROP CONSTRAINT aliases_target_key_id_fkey, DROP CONSTRAINT aliases_pkey;
   ALTER TABLE grants DROP CONSTRAINT grants_key_id_fkey;
   ALTER TABLE key_last_usage DROP CONSTRAINT key_last_usage_key_id_fkey, DROP CONSTRAINT key_last_usage_pkey;
   ALTER TABLE keys DROP CONSTRAINT keys_key_id_key, ADD CONSTRAINT keys_key_id_region_key UNIQUE (key_id, region);
   ALTER TABLE tags
     ADD PRIMARY KEY (key_id, region, tag_key),
     ADD FOREIGN KEY (key_id, region) REFERENCES keys (key_id, region) ON DELETE CASCADE;
   ALTER TABLE aliases
     ADD PRIMARY KEY (region, alias_name),
     ADD FOREIGN KEY (target_key_id, region) REFERENCES keys (key_id, region) ON DELETE CASCADE;
   DROP INDEX aliases_by_target;
   CREATE INDEX aliases_by_target ON aliases (target_key_id, region);
   ALTER TABLE grants ADD FOREIGN KEY (key_id, region) REFERENCES keys (key_id, region) ON DELETE CASCADE;
   DROP INDEX grants_by_key;
   CREATE INDEX grants_by_key ON grants (key_id, region, grantee_principal);
   ALTER TABLE key_last_usage
     ADD PRIMARY KEY (key_id, region),
     ADD FOREIGN KEY (key_id, region) REFERENCES keys (key_id, region) ON DELETE CASCADE;`,
];

/** The transaction-scoped advisory lock that serialises migrations: any fixed number of our own. */
export const MIGRATION_LOCK = 0x716b6d73; // 'qkms'

/**
 * Brings the database to this release's schema in one transaction under an advisory lock, so
 * replicas opening a fresh database together migrate it exactly once (the others wait, then find
 * it done). Refuses a database a later release migrated further. `homeRegion` owns the rows of
 * earlier releases (the regions migration).
 */
export async function migrate(pool: Pool, homeRegion: string): Promise<{ from: number }> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query("SELECT set_config('qkms.home_region', $1, true)", [homeRegion]); // read by the regions migration
    await client.query('CREATE TABLE IF NOT EXISTS qkms_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
    const found = await currentVersion(client);
    if (found > MIGRATIONS.length) {
      throw new Error(`the key store has schema version ${found}, newer than this qkms knows (${MIGRATIONS.length}): a later release wrote it; run that release`);
    }
    for (let i = found; i < MIGRATIONS.length; i++) {
      await client.query(MIGRATIONS[i]);
      await client.query('INSERT INTO qkms_schema (version) VALUES ($1)', [i + 1]);
    }
    await client.query('COMMIT');
    return { from: found };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

async function currentVersion(client: PoolClient): Promise<number> {
  const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM qkms_schema');
  return rows[0].v ?? 0;
}
