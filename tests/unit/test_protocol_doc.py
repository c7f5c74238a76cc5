"""docs/protocol.md is checked by the code it describes: every connector line of it through the
protocol decoder, every worker line against what the worker builds, the manifest example loaded
as the worker loads one, and its manifest reference naming every field the model reads."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from activities.collect.start import Served, start_message
from pdpp_orch import protocol
from pdpp_orch.manifest import BINDINGS, Manifest, RefreshPolicy, StreamSpec, load_manifest
from pdpp_orch.models import InteractionStatus, RunInput, StreamScope
from pdpp_orch.store import ServedGap
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
WORKER_TYPES = {"START", "DETAIL_GAPS_PAGE_RESPONSE", "INTERACTION_RESPONSE"}


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, re.DOTALL)


LINES = [line for block in blocks("jsonl") for line in block.splitlines() if line.strip()]


def test_the_doc_shows_every_message_type_with_a_real_line() -> None:
    shown = {json.loads(line)["type"] for line in LINES}
    assert shown == protocol.MESSAGE_TYPES | WORKER_TYPES


@pytest.mark.parametrize("line", [x for x in LINES if json.loads(x)["type"] not in WORKER_TYPES])
def test_each_connector_line_is_accepted_by_the_decoder(line: str) -> None:
    msg = protocol.decode(line.encode())
    assert isinstance(msg, dict), msg
    if msg["type"] == "RECORD":
        assert isinstance(protocol.record_key(msg, ["id"]), str)
    else:
        assert protocol.check_fields(msg) is None


def start_keys(**kw: Any) -> set[str]:
    """The keys of a START the worker builds (activities/collect/start.py)."""
    run = RunInput(connector="c", run_id="r", streams=[StreamScope(name="items")], **kw)
    served = Served([ServedGap(gap_id="g", lease_id="l", stream="items", record_key="k", detail_locator={})])
    return set(start_message(run, ["items"], {}, {}, served, BINDINGS, served.first_page(1 << 20)))


@pytest.mark.parametrize("line", [x for x in LINES if json.loads(x)["type"] in WORKER_TYPES])
def test_each_worker_line_is_what_the_worker_writes(line: str) -> None:
    msg = json.loads(line)
    if msg["type"] == "DETAIL_GAPS_PAGE_RESPONSE":
        assert msg == protocol.page_response(msg["request_id"], msg["detail_gaps"])
    elif msg["type"] == "INTERACTION_RESPONSE":
        status = InteractionStatus(msg["status"])
        wait = int(re.sub(r"\D", "", msg.get("error", {}).get("message", "")) or 0)
        data = json.dumps(msg["data"]) if "data" in msg else None
        assert msg == protocol.interaction_response(msg["request_id"], status, data, timedelta(seconds=wait))
    else:
        assert set(msg) | {"recovery_only"} == start_keys(), set(msg)
        assert list(msg["bindings"]) == list(BINDINGS)
        for stream in msg["scope"]["streams"]:
            assert set(stream) <= {"name", "time_range", "resources", "exclude_resources"}
        entry = ServedGap(gap_id="g", lease_id="l", stream="s", record_key="k").start_entry()
        assert all(set(g) == set(entry) for g in msg["detail_gaps"])


def test_the_manifest_example_loads_and_the_reference_names_every_field(tmp_path: Path) -> None:
    [example] = [b for b in blocks("json") if '"connector_key"' in b]
    path = tmp_path / "manifest.json"
    path.write_text(example)
    manifest = load_manifest(path)
    assert [s.name for s in manifest.streams] == ["threads", "messages", "labels"]
    table = DOC.split("## The manifest")[1]
    named = set(re.findall(r"`([a-z_.\[\]A-Z]+)`", table))
    read = {
        *Manifest.model_fields,
        *(f"streams[].{a.alias or f}" for f, a in StreamSpec.model_fields.items() if f != "name"),
        *(f"capabilities.refresh_policy.{f}" for f in RefreshPolicy.model_fields),
    }

    def explained(field: str) -> bool:  # by its path, a path under it, or its last name in a row
        last = field.rsplit(".", 1)[-1]
        return any(
            n.startswith((field, f"{field}.", f"{field}[")) or n.rsplit(".", 1)[-1] == last for n in named
        )

    missing = {f for f in read if not explained(f)}
    assert not missing, f"fields the manifest model reads that docs/protocol.md does not explain: {missing}"
