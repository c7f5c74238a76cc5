"""The schema of the record store: applied idempotently by its owner, checked by everyone else."""

from __future__ import annotations

from importlib import resources

import asyncpg

SCHEMA_VERSION = "9"


class SchemaError(Exception):
    """The database's schema is not the one this code needs (and it may not migrate it)."""


async def check(pool: asyncpg.Pool) -> None:
    """Raise SchemaError unless the database's schema is the version this code needs or a later
    one: the schema is additive, so the workers of an older build keep running (and restarting)
    beside the build that migrated it, until they are drained."""
    try:
        found = await pool.fetchval("SELECT value FROM schema_meta WHERE key = 'version'")
    except asyncpg.UndefinedTableError:
        found = None
    if found is None or int(found) < int(SCHEMA_VERSION):
        raise SchemaError(
            f"the record store's schema is {'v' + found if found else 'missing'}, this code needs "
            f"v{SCHEMA_VERSION}: run `pdpp-orch migrate` as the database owner"
        )


async def apply(pool: asyncpg.Pool) -> None:
    """Create or migrate the schema; safe to run at every start and concurrently."""
    ddl = resources.files("pdpp_orch.store").joinpath("schema.sql").read_text(encoding="utf-8")
    async with pool.acquire() as conn, conn.transaction():
        # One writer at a time: concurrent CREATE IF NOT EXISTS can still collide.
        await conn.execute("SELECT pg_advisory_xact_lock(7723001)")
        await conn.execute(ddl)
        await conn.execute(
            "INSERT INTO schema_meta (key, value) VALUES ('version', $1) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            SCHEMA_VERSION,
        )
