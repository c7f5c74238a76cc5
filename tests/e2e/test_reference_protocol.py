"""The reference protocol as its own runtime speaks it (docs/pdpp-compatibility.md): START's
shape, gap pages, owner assistance, connector-owned skip reasons. Connectors here are scripted
to say each message as the reference's SDK says it."""

from __future__ import annotations

from pdpp_orch.models import RunStatus
from tests.conftest import Harness

DONE = {"done": "succeeded"}


async def test_start_is_shaped_as_the_reference_shapes_it(harness: Harness) -> None:
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 2}},
            {"msg": {"type": "STATE", "stream": "a", "cursor": None}},
            DONE,
        ]
    )
    first = await harness.run(name, ["a"])
    again = await harness.run(name, ["a"])
    assert first.status is RunStatus.SUCCEEDED and again.status is RunStatus.SUCCEEDED
    one, two = harness.starts(name)
    assert sorted(one) == ["bindings", "collection_mode", "detail_gaps", "run_id", "scope", "state", "type"]
    assert one["bindings"] == {"browser": {}, "filesystem": {}, "interactive": {}, "network": {}}
    assert (one["collection_mode"], one["state"], one["detail_gaps"]) == ("full_refresh", None, [])
    assert one["scope"] == {"streams": [{"name": "a"}]}
    # A stored checkpoint, even a null cursor, makes the next run incremental (the reference's rule).
    assert (two["collection_mode"], two["state"], two["detail_gaps"]) == ("incremental", {"a": None}, [])
    assert "recovery_only" not in two


async def test_start_bindings_are_those_the_entry_offers(harness: Harness) -> None:
    name = harness.scripted([DONE], bindings=["network"])
    await harness.run(name)
    [start] = harness.starts(name)
    assert start["bindings"] == {"network": {}}
