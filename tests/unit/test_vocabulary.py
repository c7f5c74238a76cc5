"""The reference's vocabulary, table by table (issue 22): its reason codes and their recovery
classes, runtime continuations, recovery hints on DONE, and record admission field by field —
each row as the reference (PDP-Connect/pdpp at fceb768) decides it, or as docs/pdpp-compatibility.md
says we deliberately differ."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from pdpp_orch import advice, policy, protocol, reasons
from pdpp_orch.models import CollectFacts, Mode, RecoveryClass

C = RecoveryClass


@pytest.mark.parametrize(
    ("reason", "connector_class", "cls"),
    [
        ("rate_limited", None, C.PROVIDER_PRESSURE),
        ("upstream_pressure", None, C.PROVIDER_PRESSURE),
        ("auth_failure", None, C.OWNER_ACTION),
        ("gone", None, C.CONNECTOR_DEFECT),
        ("not_found", None, C.CONNECTOR_DEFECT),
        ("permanent_forbidden", None, C.CONNECTOR_DEFECT),
        ("quarantined", None, C.CONNECTOR_DEFECT),
        ("not_available_in_mode", None, C.INFORMATIONAL),
        ("out_of_scope", None, C.INFORMATIONAL),
        ("user_disabled", None, C.INFORMATIONAL),
        ("retry_exhausted", None, C.TRANSIENT),
        ("run_cap_deferred", None, C.TRANSIENT),
        ("temporary_unavailable", None, C.TRANSIENT),
        ("no_calendar_sources", None, None),  # a connector's own code: not the vocabulary's
        # The class a connector puts on a detail gap wins over its reason's ...
        ("navigation_retry_exhausted", "owner_repair_required", C.OWNER_ACTION),
        ("temporary_unavailable", "quarantined", C.CONNECTOR_DEFECT),
        ("parse_missing", "transient_no_progress", C.TRANSIENT),
        # ... but a planned run cap stays pressure when its reason is.
        ("rate_limited", "run_cap_deferred", C.PROVIDER_PRESSURE),
        ("deferred_budget", "run_cap_deferred", C.TRANSIENT),
    ],
)
def test_the_reference_reason_codes_have_its_classes(
    reason: str, connector_class: str | None, cls: RecoveryClass | None
) -> None:
    assert reasons.reason_class(reason, connector_class) is cls


GOOD = {
    "boundary": "626146523",
    "considered": 1000,
    "covered": 1000,
    "owner": "runtime",
    "remaining": True,
    "slice_start": 1,
    "slice_end": 1000,
}


@pytest.mark.parametrize(
    ("change", "ok"),
    [
        ({}, True),
        ({"considered": 5.0, "extra": {"x": 1}}, True),  # JavaScript's safe integers; other keys kept
        ({"slice_end": 1, "slice_start": 1}, True),
        ({"owner": "connector"}, False),
        ({"remaining": False}, False),
        ({"boundary": "  "}, False),
        ({"covered": -1}, False),
        ({"covered": True}, False),
        ({"considered": 1.5}, False),
        ({"slice_start": 2**53}, False),
        ({"slice_end": 0}, False),  # before its start
    ],
)
def test_continuations_are_validated_as_the_reference_validates_them(
    change: dict[str, Any], ok: bool
) -> None:
    assert (protocol.continuation_problem({**GOOD, **change}) is None) is ok
    assert protocol.continuation_problem([GOOD]) is not None


def test_a_recovery_hint_object_has_only_action_and_retryable() -> None:
    assert protocol.parse_recovery_hint({"action": "refresh_credentials", "retryable": None}) == (
        "refresh_credentials",
        None,
    )
    assert isinstance(protocol.parse_recovery_hint({"action": "unknown", "why": "x"}), protocol.LineError)


def done_failed(action: str | None, cls: RecoveryClass | None, **kw: Any) -> CollectFacts:
    return CollectFacts(
        done_status="failed",
        done_error_code="session_expired",
        done_recovery_action=action,
        done_recovery_class=cls,
        **kw,
    )


@pytest.mark.parametrize(
    ("facts", "retryably", "gap"),
    [
        (done_failed("refresh_credentials", C.OWNER_ACTION), False, ("session_expired", C.OWNER_ACTION)),
        (done_failed("retry_by_runtime", C.TRANSIENT), False, ("session_expired", C.TRANSIENT)),
        (done_failed("not_retriable", C.INFORMATIONAL), True, None),  # final: nothing to retry
        (done_failed(None, None), True, ("session_expired", C.TRANSIENT)),  # retryable, nothing usable
        (done_failed(None, None), False, None),
        (done_failed("refresh_credentials", C.OWNER_ACTION, cancelled=True), False, None),
    ],
)
def test_the_gap_of_a_runs_own_failure(
    facts: CollectFacts, retryably: bool, gap: tuple[str, RecoveryClass] | None
) -> None:
    assert policy.run_gap(facts, retryably) == gap


@pytest.mark.parametrize(
    ("facts", "retryably", "gap"),
    [
        # The hint that served it retries its gaps: a whole-run gap on top said the same twice
        # (the demo's Slack recovery: "retry 2 × stream_collection_failed", one of unknown size).
        (done_failed(None, None), True, None),
        (done_failed("retry_by_runtime", C.TRANSIENT), False, None),
        # What no retry fixes is still the owner's to know.
        (done_failed("refresh_credentials", C.OWNER_ACTION), False, ("session_expired", C.OWNER_ACTION)),
    ],
)
def test_a_recovery_runs_failure_is_its_served_gaps(
    facts: CollectFacts, retryably: bool, gap: tuple[str, RecoveryClass] | None
) -> None:
    assert policy.run_gap(facts, retryably, Mode.RECOVERY) == gap


@pytest.mark.parametrize(
    ("msg", "ok"),
    [
        ({"message": "reading", "count": 3, "total": 7.5}, True),
        ({}, True),  # lenient: the reference requires a message
        ({"count": -1}, False),
        ({"total": "7"}, False),
        ({"message": ""}, False),
        ({"provider_budget": {"object": "provider_budget_circuit_transition"}}, False),
        (
            {
                "provider_budget": {
                    "object": "provider_budget_circuit_transition",
                    "circuit": {
                        "previous_state": "closed",
                        "state": "open",
                        "reason": "provider_throttle",
                        "trigger": "provider_throttle",
                    },
                    "elapsed_ms": 12,
                    "request_count": 3,
                    "retry_tokens_remaining": "unbounded",
                }
            },
            True,
        ),
        ({"collection_rate": {"object": "collection_rate"}}, False),
        ({"attachment_recovery_outcome": {"object": "attachment_recovery_outcome"}}, False),
    ],
)
def test_progress_is_checked_as_the_reference_checks_it(msg: dict[str, Any], ok: bool) -> None:
    assert (protocol.check_fields({"type": "PROGRESS", **msg}) is None) is ok


@pytest.mark.parametrize(
    ("msg", "ok"),
    [
        ({"request_id": "r1", "kind": "otp"}, True),
        ({"request_id": "r1", "kind": "captcha"}, False),
        ({"request_id": " ", "kind": "otp"}, False),
        ({"request_id": "r1", "kind": "otp", "timeout_seconds": 0}, False),
        ({"request_id": "r1", "kind": "otp", "schema": []}, False),
        ({"type": "SKIP_RESULT", "diagnostics": ["any", "json"]}, True),  # accepted, as there
    ],
)
def test_interaction_kinds_and_diagnostics(msg: dict[str, Any], ok: bool) -> None:
    assert (protocol.check_fields({"type": "INTERACTION", **msg}) is None) is ok


@pytest.mark.parametrize(
    ("key", "extra", "expected"),
    [
        ("", {}, "schema_invalid"),
        (["a", ""], {}, "schema_invalid"),
        ("m1", {"emitted_at": ""}, "schema_invalid"),
        ("m1", {"emitted_at": None}, "schema_invalid"),
        ("m1", {}, "m1"),
    ],
)
def test_empty_keys_and_a_missing_emitted_at_are_refused(
    key: Any, extra: dict[str, Any], expected: str
) -> None:
    msg = {
        "type": "RECORD",
        "stream": "s",
        "key": key,
        "data": {"id": key},
        "emitted_at": "2026-01-01T00:00:00Z",
    }
    msg.update(extra)
    if extra.get("emitted_at", "") is None:
        del msg["emitted_at"]
    result = protocol.record_key(msg, ["id"])
    assert (result.kind if isinstance(result, protocol.LineError) else result) == expected
    env = protocol.record_envelope(protocol.dumps(msg))
    via_envelope = protocol.RecordRules(["id"]).key(env) if env else protocol.record_key(msg, ["id"])
    assert (via_envelope.kind if isinstance(via_envelope, protocol.LineError) else via_envelope) == expected


@pytest.mark.parametrize(
    ("since", "until", "value", "admitted"),
    [
        ("2026-01-01", "2026-02-01T00:00:00Z", "2026-01-15T10:00:00Z", True),
        ("2026-01-01", "2026-02-01T00:00:00Z", "2026-02-01T00:00:00Z", False),  # until is exclusive
        ("2026-01-01", "2026-02-01T00:00:00Z", "2025-12-31T23:59:59Z", False),
        ("2026-01-01", None, 1767225600000, True),  # milliseconds since the epoch
        ("2026-01-01", None, None, False),  # missing: refused
        ("2026-01-01", None, "soon", False),
        # An `until` that is a date alone is its midnight, exclusive as any other.
        (None, "2026-01-31", "2026-01-30T23:59:59Z", True),
        (None, "2026-01-31", "2026-01-31T00:00:00Z", False),
        (None, "2026-01-31", "2026-01-31", False),
    ],
)
def test_records_are_admitted_by_the_time_range_over_the_consent_time_field(
    since: str | None, until: str | None, value: Any, admitted: bool
) -> None:
    window = protocol.TimeWindow("date", since, until)
    data = {"id": "t1"} if value is None else {"id": "t1", "date": value}
    rules = protocol.RecordRules(["id"], window)
    line = protocol.dumps({"type": "RECORD", "stream": "s", "key": "t1", "data": data, "emitted_at": "x"})
    env = protocol.record_envelope(line)
    assert env is not None
    result = rules.key(env)
    assert (result == "t1") is admitted
    assert (window.check(data.get("date")) is None) is admitted
    # A delete addresses its key: not held to the window (lenient).
    tombstone = msgspec.structs.replace(env, op="delete")
    assert rules.key(tombstone) == "t1"


def test_the_owner_is_told_what_to_do_about_an_owner_action() -> None:
    from pdpp_orch.outcome import derive_outcome
    from tests.unit.test_outcome import facts

    f = facts(collect={"done_status": "failed", "done_recovery_action": "refresh_credentials"})
    o = derive_outcome(f)
    assert o.recovery_action == "refresh_credentials"
    step = advice.owner_step(o)
    assert step is not None and "fresh credentials" in step and f"pdpp-orch run {o.connector}" in step
