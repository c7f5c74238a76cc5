"""No personal data in Temporal, checked the way an attacker with the history would look.

A unique marker is planted in record data, keys, cursors, gap locators and subjects, connector
error messages, interaction prompts and stderr: through the five seed cases (the simulated
world's account, mailbox, channel and file paths carry it) and a connector that puts it in
every field of the protocol. Then every workflow on a dedicated Temporal server is read
through the API: histories, search attributes, memos, summaries. Every string is searched as
is and base64-decoded. With a key configured the marker is nowhere; with none it is nowhere
either (DESIGN §5: records, cursors and ids never enter history), except in what the operator
typed (run input), which is checked to be encrypted when a key is set.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from pdpp_orch import demo, search_attributes
from pdpp_orch.codec import Keyring, data_converter, new_key_entry
from pdpp_orch.connectors.claude_code_gen import generate
from pdpp_orch.devstack import temporal_cli
from pdpp_orch.models import RunInput, StreamScope
from pdpp_orch.registry import Registry
from pdpp_orch.store import Store
from pdpp_orch.upstream.process import UpstreamProcess
from pdpp_orch.worker import build_worker
from tests.connectors import append_scripted, grants
from workflows.connector_run import ConnectorRunWorkflow

pytestmark = pytest.mark.slow

MARKER = "ZQMARK7F3A"
HERE = Path(__file__).parent
CHANNEL = f"C{MARKER}"


def marker_world() -> dict[str, Any]:
    return {
        "preset": "small",
        "gmail": {"email": f"{MARKER}@example.test"},
        "slack": {"special_channel_id": CHANNEL},
        "bank": {"account_id": MARKER},
    }


def marker_plan() -> dict[str, Any]:
    plan = json.loads(json.dumps(demo.DEMO_PLAN))
    for fault in plan["faults"]:
        if fault["route"] == "slack.history":
            fault["ids"] = [CHANNEL]
        if fault["route"] == "chatgpt.conversation":
            fault["sample"]["count"] = 100  # of the small world's 300
    return plan


def marker_script() -> list[dict[str, Any]]:
    """Every field a connector writes, carrying the marker."""
    return [
        {
            "msg": {
                "type": "RECORD",
                "stream": "a",
                "key": f"a-{MARKER}",
                "data": {"id": f"a-{MARKER}", "n": 1, "text": MARKER},
                "emitted_at": "2026-11-26T00:00:00Z",
            }
        },
        {"msg": {"type": "PROGRESS", "stream": "a", "message": f"reading {MARKER}", "total": 3}},
        {"msg": {"type": "STATE", "stream": "a", "cursor": {"after": MARKER}}},
        {
            "msg": {
                "type": "DETAIL_GAP",
                "stream": "a",
                "record_key": f"k-{MARKER}",
                "reason": "rate_limited",
                "detail_locator": {"url": f"https://api.test/{MARKER}"},
                "last_error": {"message": f"429 for {MARKER}"},
            }
        },
        {"msg": {"type": "SKIP_RESULT", "stream": "b", "reason": "not_found",
                 "message": f"gone: {MARKER}", "resource_ids": [f"r-{MARKER}"]}},
        {"msg": {"type": "INTERACTION", "request_id": "otp1", "kind": "otp",
                 "message": f"code sent to {MARKER}", "timeout_seconds": 0.5}},
        {"await_response": True},
        {"msg": {"type": "RECORD", "stream": f"s{MARKER}", "key": "x", "data": {"id": "x"},
                 "emitted_at": "x"}},
        {"raw": f'{{"type": "RECORD", "stream": "a", "data": "{MARKER}" truncated'},
        {"msg": {"type": "STATE", "stream": "b", "cursor": {"after": MARKER}}},
        {"done": "failed", "error": {"message": f"upstream said {MARKER}", "code": "upstream_error"}},
    ]  # fmt: skip


def clear_text(raw: Any) -> str:
    """Every string of a proto/JSON document, and what each base64 string decodes to."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                out.append(str(k))
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str):
            out.append(node)
            try:
                out.append(base64.b64decode(node, validate=True).decode("utf-8", "replace"))
            except (binascii.Error, ValueError):
                pass

    walk(raw)
    return "\n".join(out)


async def everything_temporal_holds(client: Client) -> dict[str, str]:
    """Per workflow: its history, description (search attributes, memo, summary, details)."""
    seen: dict[str, str] = {}
    async for wf in client.list_workflows():
        handle = client.get_workflow_handle(wf.id, run_id=wf.run_id)
        history = await handle.fetch_history()
        desc = await handle.describe()
        seen[f"{wf.id}/{wf.run_id}"] = clear_text(json.loads(history.to_json())) + clear_text(
            json.loads(json_format.MessageToJson(desc.raw_description))
        )
    return seen


async def payload_encodings(client: Client, wid_run: str) -> set[str]:
    """The encodings of every payload in a history, but for search attributes (which Temporal
    indexes, so they stay plain: enums and counts only) and the SDK's own version markers
    (`workflow.patched`: the patch's name, written by the SDK core past the codec)."""
    wid, run_id = wid_run.split("/")
    history = json.loads((await client.get_workflow_handle(wid, run_id=run_id).fetch_history()).to_json())
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("markerName") == "core_patch":
                return
            meta = node.get("metadata")
            if isinstance(meta, dict) and "encoding" in meta and "data" in node:
                found.add(base64.b64decode(meta["encoding"]).decode())
            for k, v in node.items():
                if k != "searchAttributes":
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(history)
    return found


@pytest.fixture(scope="module")
def claude_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("claude") / MARKER / "projects"
    generate(root, sessions=12, messages=600, attachments=30, memory_notes=8, projects=3)
    return root


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamProcess]:
    with UpstreamProcess(world=marker_world(), plan=marker_plan()) as up:
        yield up


@pytest.fixture(params=["key", "no key"])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[tuple[WorkflowEnvironment, bool]]:
    keyed = request.param == "key"
    ring = Keyring.parse([new_key_entry("k1")], "test") if keyed else None
    e = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        search_attributes=search_attributes.ALL,
        data_converter=data_converter(ring),
    )
    yield e, keyed
    await e.shutdown()


async def test_the_marker_never_reaches_temporal_in_clear_text(
    env: tuple[WorkflowEnvironment, bool],
    store: Store,
    upstream: UpstreamProcess,
    claude_root: Path,
    tmp_path: Path,
) -> None:
    temporal, keyed = env
    client = temporal.client
    upstream.reset()  # re-arms the 429s, which fire once per conversation
    tag = uuid.uuid4().hex[:6]
    # The five cases (B twice), their connectors renamed for this test.
    selected = [
        demo.Case(c.key, c.title, f"{c.connector}_{tag}", c.bundled,
                  {**c.settings, "paths": grants(tmp_path, claude_root)},
                  {**c.env, "CLAUDE_CODE_ROOT": str(claude_root),
                   "SLACK_ARCHIVE": str(tmp_path / "slack.sqlite")},
                  c.streams)
        for c in demo.cases(tmp_path)
    ]  # fmt: skip
    registry = demo.write_registry(tmp_path / "connectors.toml", selected, upstream.url)
    scripted = f"marker_{tag}"
    append_scripted(registry, scripted, marker_script(), tmp_path)
    task_queue = f"tq-{tag}"
    async with build_worker(client, store, task_queue, lambda: Registry.load(registry)):
        results = await demo.run_cases(client, task_queue, selected)
        durable = {r.case.key: r.outcome.records_durable for r in results}
        assert all(durable.values()), durable
        [e] = [r for r in results if r.case.key == "E"]
        shown = await demo.show_recovery(
            client, store, lambda: upstream.counters("chatgpt.conversation", ids=True)["ids"], e
        )
        assert shown.recovered > 0 and shown.open == 0
        await client.execute_workflow(
            ConnectorRunWorkflow.run,
            RunInput(connector=scripted, run_id=scripted),
            id=scripted,
            task_queue=task_queue,
        )
        if keyed:
            # What the operator typed goes into history too; with a key it is sealed as well,
            # and so is the failure message that repeats it.
            bad = f"bad_{tag}"
            with pytest.raises(WorkflowFailureError):
                await client.execute_workflow(
                    ConnectorRunWorkflow.run,
                    RunInput(connector=scripted, run_id=bad, streams=[StreamScope(name=f"s{MARKER}")]),
                    id=bad,
                    task_queue=task_queue,
                )
        await demo.cancel_waiting_recoveries(client, results)

    # The marker did flow: into PostgreSQL, where records, cursors, gaps and prompts belong.
    in_db = {
        "records": "SELECT count(*) FROM records WHERE data::text LIKE $1",
        "cursors": "SELECT count(*) FROM stream_state WHERE cursor::text LIKE $1",
        "gaps": "SELECT count(*) FROM gaps "
        "WHERE subject LIKE $1 OR locator::text LIKE $1 OR last_error LIKE $1",
        "prompts": "SELECT count(*) FROM interactions WHERE message LIKE $1",
    }
    for what, sql in in_db.items():
        assert await store.pool.fetchval(sql, f"%{MARKER}%"), f"the marker never reached {what}"

    held = await everything_temporal_holds(client)
    assert len(held) >= len(selected) + 3  # runs, a recovery with its runs, the budget
    leaked = sorted(wid for wid, text in held.items() if MARKER in text)
    assert not leaked, f"the marker is readable in {leaked}"
    if keyed:
        # Everything is sealed: no payload in any history is plain JSON.
        encodings = {e for wid in held for e in await payload_encodings(client, wid)}
        assert encodings == {"binary/encrypted"}, encodings
