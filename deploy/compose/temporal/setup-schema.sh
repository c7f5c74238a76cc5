#!/bin/sh
# One-shot, in temporalio/admin-tools: create Temporal's two databases on its own PostgreSQL
# and bring their schemas up to the version this admin-tools image ships. Runs at every
# `docker compose up`, so every step tolerates a database that is already set up; an upgrade of
# the Temporal images therefore migrates the schema before the new server starts.
set -eu

: "${SQL_HOST:?}" "${SQL_USER:?}" "${SQL_PASSWORD:?}"
export SQL_PLUGIN=postgres12 SQL_PORT="${SQL_PORT:-5432}"
SCHEMA_ROOT=/etc/temporal/schema/postgresql/v12

setup() {
    db=$1
    dir=$2
    # create-database fails when the database exists; anything else fails the next step too.
    SQL_DATABASE=$db temporal-sql-tool create-database || echo "database $db: already there"
    SQL_DATABASE=$db temporal-sql-tool setup-schema -v 0.0
    SQL_DATABASE=$db temporal-sql-tool update-schema --schema-dir "$SCHEMA_ROOT/$dir/versioned"
}

setup temporal temporal
setup temporal_visibility visibility
echo "temporal schemas are up to date"
