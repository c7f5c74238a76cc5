"""The reference protocol as its own runtime speaks it (docs/pdpp-compatibility.md): START's
shape, gap pages, owner assistance, connector-owned skip reasons. Connectors here are scripted
to say each message as the reference's SDK says it."""

from __future__ import annotations

from typing import Any

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


def no_sources(**extra: Any) -> list[dict[str, Any]]:
    """The reference's ical connector with nothing to read: one SKIP_RESULT of its own reason."""
    skip = {
        "type": "SKIP_RESULT",
        "stream": "a",
        "reason": "no_calendar_sources",
        "message": "no .ics files in /home/x/.pdpp/imports/ical and no ICAL_SUBSCRIPTION_URL set",
        **extra,
    }
    return [{"msg": skip}, DONE]


async def test_a_connector_reason_mapped_informational_is_a_clean_run(harness: Harness) -> None:
    plain = harness.scripted(no_sources())
    o = await harness.run(plain, ["a"])
    # Without a mapping an unknown reason is a real miss: nothing collected, so failed.
    assert o.status is RunStatus.FAILED and o.reason == "records_skipped" and not o.needs_retry
    assert [(g.kind, g.recovery_class) for g in await harness.store.gaps.find(plain)] == [
        ("stream", "unknown")
    ]

    mapped = harness.scripted(no_sources(), reasons={"no_calendar_sources": "informational"})
    o = await harness.run(mapped, ["a"])
    assert o.status is RunStatus.SUCCEEDED and o.reason is None and not o.needs_retry
    assert o.skipped_by_reason == {"no_calendar_sources": 1} and o.gaps_opened == 0
    assert await harness.store.gaps.find(mapped) == []


async def test_the_recovery_hint_wins_over_the_mapping(harness: Harness) -> None:
    name = harness.scripted(
        no_sources(recovery_hint={"action": "retry_by_runtime"}),
        reasons={"no_calendar_sources": "informational"},
    )
    o = await harness.run(name, ["a"], recover=False)
    assert o.status is RunStatus.FAILED and o.needs_retry
    [gap] = await harness.store.gaps.find(name)
    assert gap.recovery_class == "transient"

    retried = harness.scripted(no_sources(), reasons={"no_calendar_sources": "transient"})
    o = await harness.run(retried, ["a"], recover=False)
    assert o.needs_retry and [h.recovery_class for h in o.retry_hints] == ["transient"]
