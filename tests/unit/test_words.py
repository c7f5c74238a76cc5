"""A connector's words, bounded and made inert (pdpp_orch/words.py, pdpp_orch/redaction.py,
activities/collect/facts.py fit): the worst a connector can say still fits every payload a run
hands Temporal; what it says is shown, never performed; its secrets are never kept."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.collect.facts import FACTS_MAX_BYTES, Tally, fit
from activities.failures import PAYLOAD_LIMIT
from pdpp_orch import policy, words
from pdpp_orch.manifest import Manifest
from pdpp_orch.models import (
    MAX_RUN_STREAMS,
    CheckpointFact,
    CollectFacts,
    CommitInput,
    CommitResult,
    CoverageFact,
    FinishInput,
    GapKind,
    PlanInput,
    RecoveryClass,
    RetryPlan,
    RunFacts,
    RunInput,
    StreamCommit,
    StreamFacts,
)
from pdpp_orch.outcome import derive_outcome
from pdpp_orch.redaction import REDACTED, Redactor

MB = "m" * 1_000_000
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def payload_bytes(value: BaseModel) -> int:
    """What Temporal is handed for `value` (the converter the workers use)."""
    return sum(p.ByteSize() for p in pydantic_data_converter.payload_converter.to_payloads([value]))


def worst_tally() -> Tally:
    """A run of MAX_RUN_STREAMS streams with the longest names, each with a checkpoint that
    could not be proven, a coverage report, and a hundred skip reasons of up to a megabyte; a
    thousand violations with megabyte details."""
    names = [f"s{i:03d}" + "n" * 124 for i in range(MAX_RUN_STREAMS)]
    streams: list[dict[str, Any]] = [{"name": n, "primary_key": ["id"]} for n in names]
    manifest = Manifest.model_validate({"connector_key": "worst", "streams": streams})
    tally = Tally(manifest, {n: manifest.stream(n) for n in names}, 1)
    for i, name in enumerate(names):
        sf = tally.stream(name)
        for r in range(100):
            text = (MB if r < 2 else "r" * 2000) + f"{i}-{r}"
            tally.skipped(sf, tally.reason(text), 10**12)
        sf.non_informational_skips = sf.gaps_opened = sf.gaps_retryable = 10**12
        sf.total = 10**15
        tally.facts.checkpoints[name] = CheckpointFact(
            stream=name, staged=10**9, proven_seq=10**12, proven_bytes=10**9, unproven_reason="x" * 500
        )
        tally.facts.coverage[name] = CoverageFact(
            stream=name, state_stream=names[0], required=10**12, hydrated=1, considered=10**12, covered=1
        )
        tally.emitted[name] = tally.collected[name] = 10**12
        tally.totals[name] = 10**15
    for line_no in range(1000):
        tally.violation("schema_invalid" * 10, MB, line_no, quarantined=False)
    tally.facts.done_error_code, tally.facts.runtime_error = "c" * 64, "e" * 1000
    return tally


def test_the_facts_of_the_worst_connector_fit_every_payload_a_run_hands_temporal() -> None:
    facts = worst_tally().finalize()
    assert len(facts.model_dump_json()) <= FACTS_MAX_BYTES
    reasons = [r for sf in facts.streams.values() for r in sf.skipped_by_reason]
    assert all(len(r) <= words.MAX_REASON_CHARS for r in reasons)
    pairs = sum(len(sf.skipped_by_reason) for sf in facts.streams.values())
    assert pairs <= words.MAX_REASON_PAIRS + MAX_RUN_STREAMS  # each stream's other_reasons beside
    run = RunInput(connector="c" * 64, run_id="r" * 200)
    lost = {"committed": False, "reason": "x" * 64, "message": "m" * 300}
    commit = CommitResult(streams=[StreamCommit(stream=n, **lost) for n in facts.streams])
    ages = '{"since":"0001-01-01","until":"9999-12-31"}'
    group = policy.GapGroup(
        stream="s" * 128,
        kind=GapKind.RANGE,
        reason="r" * 64,
        recovery_class=RecoveryClass.TRANSIENT,
        count=10**9,
        not_before=None,
        attempts=0,
        ranges=(ages,),
        max_days=1,
    )
    hint_ids = [f"hint_{i:040d}" for i in range(policy.MAX_HINTS)]
    hints = [policy.hint_for(h, group, policy.RetryPolicy(), 1, NOW, 8) for h in hint_ids]
    plan = RetryPlan(hints=hints, gaps_open_by_stream={n: 10**9 for n in facts.streams})
    outcome = derive_outcome(
        RunFacts(input=run, collect=facts, commit=commit, plan=plan, started_at=NOW, finished_at=NOW)
    )
    outcome.recovery_workflow_ids = [f"recovery-hint_{i:040d}" for i in range(policy.MAX_HINTS)]
    for payload in (
        facts,
        CommitInput(run=run, facts=facts),
        PlanInput(run=run, facts=facts, commit=commit),
        FinishInput(outcome=outcome, facts=facts),
        outcome,
    ):
        assert payload_bytes(payload) < PAYLOAD_LIMIT, type(payload).__name__


def test_facts_an_older_worker_saved_are_brought_within_their_bounds() -> None:
    reasons = {f"{i}-" + "z" * 100_000: 1 for i in range(500)}
    saved = CollectFacts(streams={"a": StreamFacts(stream="a", skipped_by_reason=reasons)})
    facts = fit(CollectFacts.model_validate_json(saved.model_dump_json()))
    counts = facts.streams["a"].skipped_by_reason
    assert len(counts) == words.MAX_REASON_PAIRS + 1
    assert counts[words.OTHER_REASONS] == 500 - words.MAX_REASON_PAIRS
    assert len(facts.model_dump_json()) < 10_000


def test_what_a_terminal_would_act_on_is_shown_instead() -> None:
    hostile = (
        "ok\x1b]8;;https://evil.example\x07link\x1b]8;;\x07 \x1b[2J\x9b31m \u202egnp.exe\x07\ttab\nline\x7f"
    )
    shown = words.visible(hostile)
    assert not any(c in shown for c in "\x1b\x07\x9b\u202e\x7f")
    assert "\\u001b]8;;https://evil.example\\u0007" in shown and "\\u202e" in shown
    assert "\ttab\nline" in shown  # text stays text
    assert "\n" not in words.visible_line(hostile) and "\\u000a" in words.visible_line(hostile)
    assert words.visible("plain – ünïcode ✓") == "plain – ünïcode ✓"


def test_markdown_from_a_connector_is_text() -> None:
    shown = words.markdown(
        "[sign in again here](https://evil.example) <b>x</b> **y** `z`\n# h www.evil.example"
    )
    for active in ("](", "<b>", "**", "`z`", "\n", "https://", "www.evil"):
        assert active not in shown
    assert shown.startswith("\\[sign in again here\\]\\(https\\://evil\\.example\\)")
    # A plain word is shown as it is (the timeline showed `rate\\_limited`); a word that only
    # looks plain is escaped whole.
    assert words.markdown("rate_limited") == "rate_limited" and words.markdown("item-42") == "item-42"
    assert words.markdown("_x_") == "\\_x\\_" and words.markdown("a.b") == "a\\.b"


def test_reasons_are_bounded_and_their_cut_is_marked() -> None:
    assert words.reason("rate_limited") == "rate_limited"
    long = words.reason("x" * 1000)
    assert len(long) == words.MAX_REASON_CHARS and long.endswith(words.CUT)


SECRET = "sk-live-5d1c0e-never-to-be-seen"


def test_a_resolved_secret_is_cut_out_in_every_form_a_program_prints_it() -> None:
    redact = Redactor([SECRET, "short"])
    forms = [
        SECRET,
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
        SECRET.encode().hex(),
        SECRET.encode().hex().upper(),
    ]
    for form in forms:
        said = redact(f"error: token rejected ({form}) by upstream")
        assert form not in said and REDACTED in said, form
    assert redact("the cut-off tail: sk-live-5d1c") == f"the cut-off tail: {REDACTED}"
    assert redact("short words stay") == "short words stay"  # too short to be cut out


def test_what_looks_like_a_credential_is_cut_out_without_knowing_it() -> None:
    redact = Redactor()
    said = redact(
        'Authorization: Bearer abcdefghijklmnop {"password": "hunter2", "n": 1} '
        "https://bob:pw@example.com/x api_key=zzz&y=2 "
        "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----"
    )
    for secret in ("abcdefghijklmnop", "hunter2", "bob:pw", "zzz", "MIIB"):
        assert secret not in said
    assert '"n": 1' in said and "y=2" in said and "example.com/x" in said
