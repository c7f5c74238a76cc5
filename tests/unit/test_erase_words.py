"""What `pdpp-orch erase` says when its scope held nothing: a misspelt connector or stream must
not read as an erase done."""

from __future__ import annotations

from pdpp_orch.cli.erase import nothing_erased
from pdpp_orch.control.erasure import Erasure
from pdpp_orch.store import Remains, Scope

ZERO = dict.fromkeys(["records", "gaps", "quarantine", "connector_stderr", "runs"], 0)


def erasure(scope: Scope, erased: dict[str, int], runs: int) -> Erasure:
    remains = Remains(runs=runs, run_ids=[f"r{i}" for i in range(runs)], spine_events=runs * 3)
    return Erasure(scope=scope, erased=erased, remains=remains, histories=runs)


def test_an_erase_of_a_connector_never_run_here_says_so_and_where_to_find_the_names() -> None:
    said = nothing_erased(erasure(Scope(connector="note"), ZERO, runs=0))
    assert said is not None and "'note'" in said and "no run" in said
    assert "pdpp-orch connectors list" in said


def test_an_erase_of_a_stream_that_held_nothing_says_nothing_was_erased() -> None:
    said = nothing_erased(erasure(Scope(connector="notes", stream="itmes"), ZERO, runs=4))
    assert said is not None and "nothing" in said and "stream itmes" in said
    assert "pdpp-orch records notes" in said


def test_an_erase_that_removed_rows_adds_nothing() -> None:
    assert nothing_erased(erasure(Scope(connector="notes"), {**ZERO, "records": 3}, runs=4)) is None
