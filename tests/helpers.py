"""Helpers the tests share: running `pdpp-orch` against the test's servers, reading what the
web UI shows of a workflow, and hypothesis settings."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import psutil
from hypothesis import HealthCheck, settings
from temporalio.client import WorkflowExecutionDescription, WorkflowExecutionStatus

from pdpp_orch import search_attributes as sa
from pdpp_orch.models import RunOutcome, RunStatus
from tests.conftest import Harness


def cli_env(h: Harness, pg_url: str, **extra_env: str) -> dict[str, str]:
    """The environment of a `pdpp-orch` command talking to the test's servers and task queue."""
    return {
        **os.environ,
        **extra_env,
        "TEMPORAL_ADDRESS": h.client.service_client.config.target_host,
        "PDPP_DATABASE_URL": pg_url,
        "PDPP_TASK_QUEUE": h.task_queue,
        "PDPP_CONNECTORS": str(h.registry_path),
    }


async def cli(
    h: Harness, pg_url: str, *args: str, stdin: bytes | None = None, **extra_env: str
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pdpp_orch.cli",
        *args,
        env=cli_env(h, pg_url, **extra_env),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def current_details(h: Harness, workflow_id: str) -> str:
    """What the Temporal web UI shows as a workflow's current details."""
    from temporalio.api.sdk.v1 import WorkflowMetadata

    meta = await h.client.get_workflow_handle(workflow_id).query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata
    )
    return str(meta.current_details)


def fuzz(examples: int) -> Any:
    # Per test, not a profile in the shared conftest: derandomized so CI sees the same examples.
    # A soak outside CI: PDPP_FUZZ_SCALE=20 (twenty times the examples, new ones on every run).
    scale = int(os.environ.get("PDPP_FUZZ_SCALE", "1"))
    return settings(
        derandomize=scale == 1,
        database=None,
        deadline=None,
        max_examples=examples * scale,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def live(marker: str) -> list[int]:
    """The live processes (by their pid on this host) with `marker` among their arguments: how
    a test finds a sandboxed connector, or what it started, which know only the pids of their
    own PID namespace."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and marker in (p.info["cmdline"] or []):
            found.append(p.pid)
    return found


# The one truth: Temporal's own word for each outcome (DESIGN §3).
TEMPORAL_STATUS = {
    RunStatus.SUCCEEDED: WorkflowExecutionStatus.COMPLETED,
    RunStatus.PARTIALLY_COMPLETED: WorkflowExecutionStatus.COMPLETED,
    RunStatus.FAILED: WorkflowExecutionStatus.FAILED,
    RunStatus.CANCELLED: WorkflowExecutionStatus.CANCELED,
}


def assert_temporal_agrees(desc: WorkflowExecutionDescription, o: RunOutcome, where: object) -> None:
    """Temporal agrees with the recorded outcome: its status, and the search attributes."""
    assert desc.status is TEMPORAL_STATUS[o.status], (where, o.status, desc.status)
    assert desc.typed_search_attributes.get(sa.RUN_STATUS) == o.status.value, where
    assert desc.typed_search_attributes.get(sa.RECORDS_DURABLE) == o.records_durable, where
