"""A connector its worker cannot resolve (unknown to the worker's registry, that registry or the
manifest unreadable there): the run ends `failed`, configuration_error, with one outcome on every
surface, and the CLI refuses such a run before starting it, naming the registry the worker reads."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus

from pdpp_orch import search_attributes as sa
from pdpp_orch.control.recoveries import recoveries
from pdpp_orch.models import RunStatus
from tests.conftest import ABC_MANIFEST, SCRIPTED, Harness
from tests.helpers import cli


def other_registry(tmp: Path, name: str, manifest: Path = ABC_MANIFEST) -> Path:
    """A registry of the CLI's that the worker does not read."""
    path = tmp / "elsewhere" / "other.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        f"[connectors.{name}]\ncommand = {json.dumps([sys.executable, str(SCRIPTED)])}\n"
        f"manifest = {json.dumps(str(manifest))}\n"
    )
    return path


def unknown(h: Harness) -> str:
    h.scripted([{"done": "succeeded"}])  # the worker's registry exists, without the connector
    return "mine"


def manifest_gone(h: Harness) -> str:
    return h.scripted([{"done": "succeeded"}], manifest=h.tmp / "gone.json")


def registry_unreadable(h: Harness) -> str:
    h.registry_path.write_text("[connectors.mine\n")
    return "mine"


@pytest.mark.parametrize("breakage", [unknown, manifest_gone, registry_unreadable])
async def test_a_run_its_worker_cannot_resolve_ends_failed_on_every_surface(
    harness: Harness, caplog: pytest.LogCaptureFixture, breakage: object
) -> None:
    assert callable(breakage)
    name = breakage(harness)
    started_with = str(other_registry(harness.tmp, name))
    with caplog.at_level(logging.WARNING):
        o = await harness.run(name, registry=started_with)
    assert o.status is RunStatus.FAILED and o.reason == "configuration_error"
    assert o.error is not None and o.error.kind == "config_error"
    # Both registries named: the one the worker reads and the one the run was started with.
    assert str(harness.registry_path) in o.error.message and started_with in o.error.message
    row = await harness.store.runs.get(o.run_id)
    assert row is not None and row.outcome is not None and row.outcome.status is RunStatus.FAILED
    events = [e.event_type for e in await harness.store.runs.spine_events(o.run_id)]
    assert events[-1] == "run.failed"
    desc = await harness.client.get_workflow_handle(o.run_id).describe()
    assert desc.status is WorkflowExecutionStatus.FAILED
    assert desc.typed_search_attributes.get(sa.RUN_STATUS) == "failed"
    # An expected condition: one line in the worker's log, no traceback.
    worker_lines = [r for r in caplog.records if "cannot resolve connector" in r.getMessage()]
    assert worker_lines and all(r.exc_info is None for r in caplog.records)


async def test_the_cli_refuses_a_connector_its_worker_does_not_know(harness: Harness, pg_url: str) -> None:
    harness.scripted([{"done": "succeeded"}])
    name = f"mine{uuid.uuid4().hex[:6]}"
    other = other_registry(harness.tmp, name)
    async with harness.worker():
        code, out, err = await cli(harness, pg_url, "run", name, "--connectors", str(other), "--wait")
        assert code == 2, (out, err)
        said = " ".join(err.split())
        assert (
            f"the worker on task queue '{harness.task_queue}'" in said
            and f"unknown connector '{name}'" in said
        )
        assert f"it reads {harness.registry_path}, this command read {other}" in said
        assert f"pdpp-orch worker --connectors {other}" in said  # what to do about it
        code, _, err = await cli(
            harness, pg_url, "schedule", "create", name, "--every", "1h", "--connectors", str(other)
        )
        assert code == 2 and f"it reads {harness.registry_path}" in " ".join(err.split())
    # Refused before starting: no run, no schedule.
    runs = [w.id async for w in harness.client.list_workflows(f"PdppConnector = '{name}'")]
    assert runs == [] and await harness.store.runs.recent(name) == []
    assert [s.id async for s in await harness.client.list_schedules() if s.id == f"sync-{name}"] == []


async def test_recover_now_refuses_what_its_worker_cannot_run(harness: Harness, pg_url: str) -> None:
    gap = {"type": "DETAIL_GAP", "stream": "a", "reason": "rate_limited", "record_key": "k0"}
    name = harness.scripted([{"msg": gap}, {"done": "succeeded"}])
    o = await harness.run(name, recover=False)  # its hint is in the ledger, with no recovery
    assert o.needs_retry and o.recovery_workflow_ids == []
    other = other_registry(harness.tmp, name)
    harness.registry_path.write_text("")  # the worker now reads a registry without it
    async with harness.worker():
        code, _, err = await cli(harness, pg_url, "recover", "now", name, "--connectors", str(other))
    said = " ".join(err.split())
    assert code == 2 and f"it reads {harness.registry_path}, this command read {other}" in said
    assert [r.state for r in await recoveries(harness.store, harness.client, name)] == ["not started"]
