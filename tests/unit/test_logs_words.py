"""How `pdpp-orch logs` tells a run's end and its batches: why a run failed (its error, which
`status` shows too), the build that ran it, and counts in words that agree with their number."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pdpp_orch.cli import logs
from pdpp_orch.cli.logs import Timeline, _ended, _outcome
from pdpp_orch.store import LogEntry

AT = datetime(2026, 12, 4, 17, 13, tzinfo=UTC)


def entry(kind: str, **payload: Any) -> LogEntry:
    return LogEntry(at=AT, kind=kind, payload=payload)


def test_a_failed_run_says_why_and_on_which_build() -> None:
    error = {"kind": "config_error", "message": "connector 'secretive': env TOKEN: no QA_TOKEN"}
    said = _outcome(
        entry("run.failed", status="failed", reason="configuration_error", error=error, build_id="v1")
    )
    assert "why: config_error: connector 'secretive': env TOKEN: no QA_TOKEN" in said
    assert "build v1" in said
    quiet = _outcome(entry("run.succeeded", status="succeeded", error=None, build_id=None))
    assert "why" not in quiet and "build" not in quiet


def test_one_record_is_a_record(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _ended(entry("attempt.ended", attempt=1, done_status="succeeded", records_durable=1)).endswith(
        ", 1 record durable"
    )
    assert "1 record durable" in _outcome(entry("run.succeeded", status="succeeded", records_durable=1))
    printed: list[str] = []
    monkeypatch.setattr(logs.out, "print", lambda text, **_: printed.append(text))
    view = Timeline(as_json=False)
    view.batches = [entry("batch_ingested", records=1, bytes=91)]
    view.close()
    assert printed == ["17:13:00  1 record made durable (1 batch, 91 bytes)"]
