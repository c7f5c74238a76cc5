"""The messages of the reference protocol that the runtime answers or checks, as pure functions:
INTERACTION_RESPONSE, gap pages, ASSISTANCE and ASSISTANCE_STATUS."""

from __future__ import annotations

import json
from datetime import timedelta

from pdpp_orch.models import InteractionStatus
from pdpp_orch.protocol import interaction_response


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
