"""The collect attempt's counters (activities/collect/facts.py)."""

from __future__ import annotations

from activities.collect.facts import MAX_VIOLATIONS_KEPT, Tally
from pdpp_orch.manifest import Manifest


def test_violations_are_kept_in_line_order_even_when_found_late() -> None:
    """A record PostgreSQL refuses is found when its batch is written, after later lines were
    read: the facts still list violations by line, the first MAX_VIOLATIONS_KEPT of them."""
    manifest = Manifest.model_validate(
        {"connector_key": "t", "streams": [{"name": "a", "primary_key": ["id"]}]}
    )
    tally = Tally(manifest, {}, 1)
    for line_no in (5, 9, 12):
        tally.violation("key_mismatch", "x", line_no, quarantined=True)
    tally.violation("schema_invalid", "refused at flush", 7, quarantined=True)
    assert [v.line_no for v in tally.facts.violations] == [5, 7, 9, 12]
    for line_no in range(100, 100 + MAX_VIOLATIONS_KEPT):
        tally.violation("key_mismatch", "x", line_no, quarantined=True)
    tally.violation("schema_invalid", "refused at flush", 8, quarantined=True)
    kept = [v.line_no for v in tally.facts.violations]
    assert kept == sorted(kept) and len(kept) == MAX_VIOLATIONS_KEPT and kept[:5] == [5, 7, 8, 9, 12]
    assert tally.facts.violation_count == 5 + MAX_VIOLATIONS_KEPT
