"""Which Temporal and PostgreSQL a command talks to, and whether they answer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from pdpp_orch.control import UsageError
from pdpp_orch.control.connect import connect
from pdpp_orch.devstack import find_running
from pdpp_orch.settings import Settings
from pdpp_orch.store import Store, ping


def endpoints(s: Settings) -> tuple[str, str]:
    """Temporal address and database URL: from the environment, else the running dev stack."""
    stack = None if (s.temporal_address and s.database_url) else find_running(s.data_dir)
    address = s.temporal_address or (stack.temporal_address if stack else None)
    database = s.database_url or (stack.database_url if stack else None)
    if not address or not database:
        raise UsageError(
            "no Temporal/PostgreSQL to talk to: start `pdpp-orch dev` in another shell, or set "
            "TEMPORAL_ADDRESS and PDPP_DATABASE_URL"
        )
    return address, database


@contextlib.asynccontextmanager
async def command_store(database: str) -> AsyncIterator[Store]:
    """A one-connection store for a command."""
    store = await Store.connect(database, max_size=1)
    try:
        yield store
    finally:
        await store.close()


async def health(s: Settings, wait_s: float) -> list[str]:
    """What does not answer within `wait_s` seconds: empty when Temporal and PostgreSQL do."""
    address, database = endpoints(s)
    problems = []
    try:
        client = await asyncio.wait_for(connect(address, s.temporal_namespace), wait_s)
        await asyncio.wait_for(client.service_client.check_health(), wait_s)
    except Exception as e:
        problems.append(f"Temporal at {address}: {type(e).__name__}: {e}"[:300])
    try:
        await ping(database, wait_s)
    except Exception as e:
        # Never print the DSN: it may hold a password.
        problems.append(f"PostgreSQL: {type(e).__name__}: {e}"[:300])
    return problems
