"""The least-privilege split: the owner migrates (`pdpp-orch migrate`), workers log in as
`pdpp_worker` (deploy/postgres/worker-role.sql) with PDPP_APPLY_SCHEMA=0 and run connectors."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from pdpp_orch.models import RunStatus
from pdpp_orch.registry import Registry
from pdpp_orch.store import SchemaError, Store
from pdpp_orch.store.schema import SCHEMA_VERSION
from pdpp_orch.worker import build_worker
from tests.conftest import ROOT, Harness
from tests.helpers import cli
from workflows.connector_run import ConnectorRunWorkflow

ROLE_SQL = ROOT / "deploy" / "postgres" / "worker-role.sql"


def with_db(url: str, db: str, user: str | None = None, password: str | None = None) -> str:
    u = urlsplit(url)
    netloc = u.netloc.rsplit("@", 1)[-1]
    if user:
        netloc = f"{user}:{password}@{netloc}" if password else f"{user}@{netloc}"
    elif "@" in u.netloc:
        netloc = u.netloc
    return urlunsplit((u.scheme, netloc, f"/{db}", u.query, u.fragment))


async def test_owner_migrates_and_the_worker_role_runs_without_ddl(harness: Harness, pg_url: str) -> None:
    db = f"rs_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'CREATE DATABASE "{db}"')
    finally:
        await admin.close()
    owner_url = with_db(pg_url, db)

    # Before migrating, a worker that may not run DDL is told what to do.
    code, _, err = await cli(harness, owner_url, "runs", PDPP_APPLY_SCHEMA="0")
    assert code == 2 and "schema is missing" in err and "pdpp-orch migrate" in err
    code, out, err = await cli(harness, owner_url, "migrate")
    assert code == 0 and "schema at v" in out, err

    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute(ROLE_SQL.read_text())
        await conn.execute("ALTER ROLE pdpp_worker PASSWORD 'worker-pw'")
    finally:
        await conn.close()
    worker_url = with_db(pg_url, db, "pdpp_worker", "worker-pw")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await Store.connect(worker_url, apply_schema=True)  # no DDL for this role

    store = await Store.connect(worker_url, apply_schema=False)
    try:
        name = harness.scripted(
            [
                {"records": {"stream": "a", "count": 5}},
                {
                    "msg": {
                        "type": "SKIP_RESULT",
                        "stream": "a",
                        "reason": "rate_limited",
                        "resource_ids": ["r1"],
                    }
                },
                {"state": "a"},
                {"done": "succeeded"},
            ]
        )
        path = harness.registry_path
        inp = harness.run_input(name, recover=False)
        async with build_worker(harness.client, store, harness.task_queue, lambda: Registry.load(path)):
            o = await harness.client.execute_workflow(
                ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=harness.task_queue
            )
        assert o.status is RunStatus.PARTIALLY_COMPLETED and o.records_durable == 5 and o.retry_hints
        assert await store.pool.fetchval("SELECT count(*) FROM records WHERE connector = $1", name) == 5
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await store.pool.execute("DELETE FROM records")
        code, out, _ = await cli(harness, worker_url, "runs", "--json", PDPP_APPLY_SCHEMA="0")
        assert code == 0 and inp.run_id in out
    finally:
        await store.close()
    # A stale schema is refused too, naming both versions.
    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute("UPDATE schema_meta SET value = '1' WHERE key = 'version'")
    finally:
        await conn.close()
    with pytest.raises(SchemaError, match="schema is v1, this code needs v"):
        await Store.connect(worker_url, apply_schema=False)
    # A newer one is not: the schema is additive, and the workers of an older build keep running
    # (and restarting) beside the build that migrated it until they are drained.
    conn = await asyncpg.connect(owner_url)
    try:
        later = str(int(SCHEMA_VERSION) + 1)
        await conn.execute("UPDATE schema_meta SET value = $1 WHERE key = 'version'", later)
    finally:
        await conn.close()
    await (await Store.connect(worker_url, apply_schema=False)).close()
