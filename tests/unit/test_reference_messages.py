"""The messages of the reference protocol that the runtime answers or checks, as pure functions:
INTERACTION_RESPONSE, gap pages, ASSISTANCE and ASSISTANCE_STATUS."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from pdpp_orch import policy
from pdpp_orch.models import GapStatus, InteractionStatus, RecoveryClass
from pdpp_orch.protocol import check_fields, interaction_response, page_budget, page_fit, page_response


def test_interaction_responses_carry_what_the_reference_sends() -> None:
    ok = interaction_response("r1", InteractionStatus.SUCCESS, json.dumps({"code": "123456"}), timedelta(0))
    assert ok == {
        "type": "INTERACTION_RESPONSE",
        "request_id": "r1",
        "status": "success",
        "data": {"code": "123456"},
        "value": "123456",
    }
    creds = interaction_response(
        "r2", InteractionStatus.SUCCESS, json.dumps({"username": "u", "password": "p"}), timedelta(0)
    )
    assert creds["data"] == {"username": "u", "password": "p"} and "value" not in creds
    late = interaction_response("r3", InteractionStatus.TIMEOUT, None, timedelta(seconds=3600))
    assert late["error"] == {"code": "timeout", "message": "no answer from the owner within 3600 s"}
    no = interaction_response("r4", InteractionStatus.CANCELLED, None, timedelta(0))
    assert (no["status"], no["error"]["code"]) == ("cancelled", "cancelled") and "data" not in no


def test_the_page_budget_is_clamped_as_the_reference_clamps_it() -> None:
    assert page_budget(None) == 262_144 == page_budget("x") == page_budget(True) == page_budget(float("nan"))
    assert page_budget(1000) == 262_144  # below 16 KiB: the default, not the minimum
    assert page_budget(16_384) == 16_384 and page_budget(20_000.9) == 20_000
    assert page_budget(10**9) == 1_048_576


def test_a_page_holds_what_fits_and_always_its_first_entry() -> None:
    entry = {"gap_id": "g", "pad": "x" * 90}
    cost = len(json.dumps(entry, separators=(",", ":"))) + 1  # its JSON and a separator
    assert page_fit([entry] * 10, 2 + cost * 3) == 3
    assert page_fit([entry] * 10, 2 + cost * 3 - 1) == 2
    assert page_fit([{"pad": "x" * 100_000}, entry], 16_384) == 1  # alone over budget, still served
    assert page_fit([entry] * 10_000, 1_048_576) == 500
    assert page_fit([], 16_384) == 0
    page = page_response("dgp_1_1", [entry])
    assert page == {
        "type": "DETAIL_GAPS_PAGE_RESPONSE",
        "reference_only": True,
        "request_id": "dgp_1_1",
        "detail_gaps": [entry],
    }


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"request_id": "r"}, None),
        ({"request_id": "r", "streams": ["a"], "max_bytes": 20000}, None),
        ({"request_id": "r", "max_bytes": 1.5}, None),
        ({"request_id": "r", "reference_only": None}, "reference_only must be true"),
        ({"request_id": " "}, "request_id must not be empty"),
        ({}, "request_id is required"),
        ({"request_id": 7}, "request_id has the wrong type"),
        ({"request_id": "r", "streams": "a"}, "streams has the wrong type"),
        ({"request_id": "r", "streams": [""]}, "streams must be non-empty strings"),
        ({"request_id": "r", "max_bytes": 0}, "max_bytes must be a positive number"),
        ({"request_id": "r", "max_bytes": True}, "max_bytes must be a positive number"),
        ({"request_id": "r", "max_bytes": "1"}, "max_bytes must be a positive number"),
    ],
)
def test_page_requests_are_checked(fields: dict[str, Any], problem: str | None) -> None:
    msg = {"type": "DETAIL_GAPS_PAGE_REQUEST", "reference_only": True, **fields}
    err = check_fields(msg)
    if problem is None:
        assert err is None
    else:
        assert err is not None and err.kind == "schema_invalid" and problem in err.detail


def test_an_unserved_detail_gap_settles_untried() -> None:
    gap = policy.ServedGap("g", RecoveryClass.PROVIDER_PRESSURE, 3, has_locator=True, served=False)
    s = policy.settle(gap, "rate_limited", run_clean=True, max_attempts=5, max_no_progress=8)
    assert (s.status, s.attempts, s.attempted) == (GapStatus.PENDING, 3, False)
    served = policy.settle(
        policy.ServedGap("g", RecoveryClass.PROVIDER_PRESSURE, 3, has_locator=True),
        "rate_limited",
        run_clean=True,
        max_attempts=5,
        max_no_progress=8,
    )
    assert (served.status, served.attempts, served.attempted) == (GapStatus.PENDING, 4, True)


def test_an_input_schema_is_kept_without_examples_or_secrets() -> None:
    from activities.collect.assistance import attachment, redact_schema

    schema = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "example": "123456", "enum": ["1"]},
            "password": "hunter2",
            "otp_hint": {"type": "string", "default": "000000"},
        },
    }
    assert redact_schema(schema) == {
        "type": "object",
        "properties": {
            "code": {"type": "string", "example": "[REDACTED]", "enum": "[REDACTED]"},
            "password": "[REDACTED]",
            "otp_hint": {"type": "string", "default": "[REDACTED]"},
        },
    }
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(12):
        node["a"] = {}
        node = node["a"]
    assert "[REDACTED]" in json.dumps(redact_schema(deep))
    assert attachment({"kind": "qr", "title": "Scan me", "id": "surface:1", "availability": "ready"}) == {
        "kind": "qr",
        "label": "Scan me",
        "status": "ready",
        "ref": "surface:1",
    }
    assert attachment({"kind": "url", "ref": "https://example.com/?token=x"}) == {"kind": "url"}


def test_assistance_status_is_checked() -> None:
    ok = {"type": "ASSISTANCE_STATUS", "assistance_request_id": "a", "status": "escalated"}
    assert check_fields(ok) is None
    err = check_fields({**ok, "status": "done"})
    assert err is not None and "status must be one of" in err.detail
    err = check_fields({"type": "ASSISTANCE_STATUS", "status": "resolved"})
    assert err is not None and "assistance_request_id is required" in err.detail
