#!/bin/sh
# One-shot, in the PostgreSQL image, after `migrate`: grants the least-privilege role pdpp_worker
# what the workers need (deploy/postgres/worker-role.sql, again after every migration: its grants
# are per table) and sets its password from .env. As the owner: PGHOST, PGUSER, PGPASSWORD and
# PGDATABASE name it.
set -eu

psql --no-psqlrc --set=ON_ERROR_STOP=1 --quiet --file=/sql/worker-role.sql

# psql quotes the value of :'password' itself, in what it reads (not in --command).
echo "ALTER ROLE pdpp_worker PASSWORD :'password';" |
    psql --no-psqlrc --set=ON_ERROR_STOP=1 --quiet --set=password="$PDPP_WORKER_PASSWORD"
echo "pdpp_worker granted"
