-- The least-privilege role of the pdpp-orchestrator worker on the record store.
--
-- Two roles share the database:
--   pdpp_owner   owns the database, the schema objects and every migration
--                (pdpp_orch/store/schema.sql, applied by `pdpp-orch migrate`);
--   pdpp_worker  logs in for the workers and the CLI: it reads and writes rows, nothing else.
--                No DDL, no TRUNCATE, and DELETE only on connector_locks.
--
-- Run it as pdpp_owner (or a superuser), connected to the record store's database, after the
-- schema has been applied, and again after every schema migration (the grants are per table):
--
--   psql "postgresql://pdpp_owner@HOST/pdpp" -v ON_ERROR_STOP=1 -f deploy/postgres/worker-role.sql
--
-- Creating the login role needs CREATEROLE. Where the owner lacks it, let an administrator run
-- `CREATE ROLE pdpp_worker LOGIN` first; this script then leaves the role as it is. Set the
-- password outside of this file (`\password pdpp_worker`, or your platform's IAM).
--
-- Workers and the CLI logging in as pdpp_worker need PDPP_APPLY_SCHEMA=0 (they then only check
-- the schema's version); the owner applies migrations with `pdpp-orch migrate`.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pdpp_worker') THEN
        CREATE ROLE pdpp_worker LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
    END IF;
END
$$;

-- TEMPORARY: every flush COPYs into the session's own temp table `records_stage`; a database
-- hardened with REVOKE ALL ... FROM PUBLIC would otherwise refuse it.
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO pdpp_worker', current_database());
END
$$;

-- USAGE without CREATE: the worker can name the tables but not add any. (PostgreSQL 15 and
-- later grant PUBLIC no CREATE on `public`; on older servers revoke it from PUBLIC as well.)
REVOKE ALL ON SCHEMA public FROM pdpp_worker;
GRANT USAGE ON SCHEMA public TO pdpp_worker;

-- Start from nothing, so the grants below are exactly what the role holds after every run.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM pdpp_worker;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM pdpp_worker;

-- Upserted rows: records (COPY and ON CONFLICT DO UPDATE), committed cursors, per-run resume
-- points, the run ledger, the gap ledger (leases use SELECT ... FOR UPDATE SKIP LOCKED, which
-- needs UPDATE), and interactions (the owner's answer is written, read once and cleared).
GRANT SELECT, INSERT, UPDATE ON
    records, stream_state, run_checkpoints, runs, gaps, interactions
TO pdpp_worker;

-- Append-only: spine events (bigserial id) and quarantined lines.
GRANT SELECT, INSERT ON spine_events, quarantine TO pdpp_worker;
GRANT USAGE ON SEQUENCE spine_events_id_seq TO pdpp_worker;

-- The schema version is written by whoever migrates, read by everyone.
GRANT SELECT ON schema_meta TO pdpp_worker;

-- Schema v5: one forward run per connector at a time. The lock row is taken over and deleted
-- when its run ends: the only table the worker deletes from. Granted only where the schema
-- already has it, so this script also runs against a v4 database.
DO $$
BEGIN
    IF to_regclass('public.connector_locks') IS NOT NULL THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON connector_locks TO pdpp_worker;
    END IF;
END
$$;

-- Schema v6: owner assistance (a connector's notices, opened and closed by its runs).
DO $$
BEGIN
    IF to_regclass('public.assistance') IS NOT NULL THEN
        GRANT SELECT, INSERT, UPDATE ON assistance TO pdpp_worker;
    END IF;
END
$$;

-- Schema v7: the connector's stderr per attempt (`pdpp-orch logs`), trimmed to its last lines
-- as it is written.
DO $$
BEGIN
    IF to_regclass('public.connector_stderr') IS NOT NULL THEN
        GRANT SELECT, INSERT, DELETE ON connector_stderr TO pdpp_worker;
    END IF;
END
$$;

-- Schema v8: runtime-owned continuations (SKIP_RESULT.continuation), written by runs.
DO $$
BEGIN
    IF to_regclass('public.continuations') IS NOT NULL THEN
        GRANT SELECT, INSERT ON continuations TO pdpp_worker;
    END IF;
END
$$;
