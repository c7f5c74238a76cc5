"""The wire protocol: framing, decoding and classification of single lines."""

from __future__ import annotations

import pytest

from pdpp_orch import protocol
from pdpp_orch.models import RecoveryClass
from pdpp_orch.protocol import LineError, LineSplitter


def test_splits_on_newline_only_and_strips_one_carriage_return() -> None:
    s = LineSplitter(1000)
    lines = s.feed('{"a": "x\u2028y\u2029z"}\r\n{"b"'.encode())
    assert lines == ['{"a": "x\u2028y\u2029z"}'.encode()]
    assert s.feed(b": 1}\n\n") == [b'{"b": 1}', b""]
    assert s.finish() == []


def test_unterminated_tail_is_a_final_line() -> None:
    s = LineSplitter(1000)
    assert s.feed(b'{"x": 1}\n{"y"') == [b'{"x": 1}']
    assert s.finish() == [b'{"y"']


def test_oversize_lines_are_reported_not_buffered() -> None:
    s = LineSplitter(10)
    out = s.feed(b"0123456789ABCDEF")  # no newline yet: already over the limit
    assert out == []
    out = s.feed(b"GHIJ\nok\n")
    assert out[0] == LineError("line_too_long", "line of 20 bytes exceeds the 10-byte limit", 20)
    assert out[1] == b"ok"
    assert s.feed(b"0123456789XY\n") == [
        LineError("line_too_long", "line of 12 bytes exceeds the 10-byte limit", 12)
    ]


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b'{"type": "STATE", "cursor": {"m": 18446744073709551615n}}', "invalid_json"),
        (b'{"type": "RECORD", "data": NaN}', "invalid_json"),
        (b"\xff\xfe not utf-8", "invalid_json"),
        (b"[1, 2, 3]", "not_an_object"),
        (b'"RECORD"', "not_an_object"),
        (b'{"type": "HELLO"}', "unknown_type"),
        (b'{"no_type": true}', "unknown_type"),
    ],
)
def test_bad_lines_are_classified(line: bytes, kind: str) -> None:
    result = protocol.decode(line)
    assert isinstance(result, LineError) and result.kind == kind


def test_integers_beyond_64_bits_stay_exact() -> None:
    msg = protocol.decode(
        b'{"type": "STATE", "stream": "s", "cursor": {"m": 123456789012345678901234567890}}'
    )
    assert isinstance(msg, dict) and msg["cursor"]["m"] == 123456789012345678901234567890
    assert protocol.dumps(msg["cursor"]) == b'{"m":123456789012345678901234567890}'


@pytest.mark.parametrize(
    ("key", "data", "pk", "expected"),
    [
        ("m1", {"id": "m1"}, ["id"], "m1"),
        ("42", {"id": 42}, ["id"], "42"),
        (["u1", "c1"], {"user": "u1", "chan": "c1"}, ["user", "chan"], '["u1","c1"]'),
        ("m2", {"id": "m1"}, ["id"], "key_mismatch"),
        (["u2", "c1"], {"user": "u1", "chan": "c1"}, ["user", "chan"], "key_mismatch"),
        (["u1", "c2"], {"user": "u1", "chan": "c1"}, ["user", "chan"], "key_mismatch"),
        (7, {"id": 7}, ["id"], "schema_invalid"),
        ([], {"id": 7}, ["id"], "schema_invalid"),
        (["a", 1], {"id": "a"}, ["id"], "schema_invalid"),
        ("m1", ["not", "an", "object"], ["id"], "schema_invalid"),
        ("m1", None, ["id"], "schema_invalid"),
        # The reference's tolerance: a key with fewer parts than the primary key (the real
        # spotify `top_artists`: primary_key [id, time_range], key String(data.id)), and
        # primary-key fields missing from data, are not compared.
        ("a1", {"id": "a1", "time_range": "short_term"}, ["id", "time_range"], "a1"),
        (["u1"], {"user": "u1", "chan": "c1"}, ["user", "chan"], '["u1"]'),
        ("m1", {"text": "no id"}, ["id"], "m1"),
        (["u1", "c1"], {"chan": "c1"}, ["user", "chan"], '["u1","c1"]'),
        (["m1", "extra"], {"id": "m1"}, ["id"], '["m1","extra"]'),
        # Stored as sent: a one-part list is not its string.
        (["m1"], {"id": "m1"}, ["id"], '["m1"]'),
        # Compared as text, as JavaScript's String() writes the value.
        ("true", {"id": True}, ["id"], "true"),
        ("null", {"id": None}, ["id"], "null"),
        ("m1", {"id": None}, ["id"], "key_mismatch"),
        ("5", {"id": 5.0}, ["id"], "5"),
        ("1.5e-7", {"id": 1.5e-7}, ["id"], "1.5e-7"),
        ("18446744073709551617", {"id": 18446744073709551617}, ["id"], "18446744073709551617"),
        ("[object Object]", {"id": {}}, ["id"], "key_mismatch"),
    ],
)
def test_record_key_must_agree_with_the_primary_key(
    key: object, data: object, pk: list[str], expected: str
) -> None:
    msg = {"type": "RECORD", "stream": "s", "key": key, "data": data, "emitted_at": "2026-11-26T00:00:00Z"}
    result = protocol.record_key(msg, pk)
    assert (result.kind if isinstance(result, LineError) else result) == expected


@pytest.mark.parametrize("data", [{"id": "other"}, None, [1], "x"])
def test_a_delete_needs_no_data_and_is_not_compared_with_it(data: object) -> None:
    msg: dict[str, object] = {"type": "RECORD", "stream": "s", "key": "m1", "op": "delete", "emitted_at": "x"}
    if data is not None:
        msg["data"] = data
    expected = "key_mismatch" if isinstance(data, dict) else "m1"
    result = protocol.record_key(msg, ["id"])
    assert (result.kind if isinstance(result, LineError) else result) == expected
    msg["op"] = "upsert"
    result = protocol.record_key(msg, ["id"])
    assert isinstance(result, LineError) and result.kind == "schema_invalid"


def test_recovery_hints_are_a_closed_vocabulary() -> None:
    assert protocol.parse_recovery_hint("retry_by_runtime") == ("retry_by_runtime", None)
    assert protocol.parse_recovery_hint({"action": "upstream_unblock", "retryable": True}) == (
        "upstream_unblock",
        True,
    )
    for bad in ("retry_soon", {"retryable": True}, 3, {"action": "unknown", "retryable": "yes"}):
        assert isinstance(protocol.parse_recovery_hint(bad), LineError)


@pytest.mark.parametrize(
    ("reason", "action", "retryable", "cls"),
    [
        ("rate_limited", "retry_by_runtime", None, RecoveryClass.PROVIDER_PRESSURE),
        ("http_429", None, True, RecoveryClass.PROVIDER_PRESSURE),
        ("upstream_500", "retry_by_runtime", None, RecoveryClass.TRANSIENT),
        ("token_expired", "refresh_credentials", None, RecoveryClass.OWNER_ACTION),
        ("otp", "manual_action_required", None, RecoveryClass.OWNER_ACTION),
        ("selector_changed", "update_selector", None, RecoveryClass.CONNECTOR_DEFECT),
        ("archived", "not_retriable", None, RecoveryClass.INFORMATIONAL),
        ("mystery", None, None, RecoveryClass.UNKNOWN),
        ("upstream_500", "retry_by_runtime", False, RecoveryClass.UNKNOWN),
    ],
)
def test_recovery_class(reason: str, action: str | None, retryable: bool | None, cls: RecoveryClass) -> None:
    assert protocol.recovery_class(reason, action, retryable) is cls


def test_retry_after_is_read_wherever_the_connector_put_it() -> None:
    assert protocol.retry_after_seconds({"retry_after_seconds": 600}) == 600
    assert protocol.retry_after_seconds({"diagnostics": {"retry_after_seconds": 86400}}) == 86400
    assert protocol.retry_after_seconds({"last_error": {"retry_after_seconds": 5.5}}) == 5.5
    assert protocol.retry_after_seconds({"retry_after_seconds": True}) is None


@pytest.mark.parametrize(
    ("msg", "ok"),
    [
        ({"type": "STATE", "stream": "s", "cursor": None}, True),
        ({"type": "STATE", "stream": "s"}, True),  # an absent cursor is null, as in the reference
        ({"type": "STATE", "stream": "s", "cursor": [1]}, False),
        ({"type": "DONE", "status": "succeeded", "records_emitted": 3}, True),
        ({"type": "DONE", "status": "ok", "records_emitted": 3}, False),
        ({"type": "DONE", "status": "failed", "records_emitted": True}, False),
        ({"type": "DONE", "status": "failed", "records_emitted": 0, "error": {"code": "Bad Code"}}, False),
        ({"type": "DETAIL_GAP", "stream": "s", "record_key": "k", "retryable": "yes"}, False),
        ({"type": "DETAIL_COVERAGE", "stream": "m", "required_keys": 3, "hydrated_keys": ["a"]}, True),
        ({"type": "DETAIL_COVERAGE", "stream": "m", "hydrated_keys": 3}, False),
        ({"type": "INTERACTION", "request_id": "r1", "kind": "otp", "message": "code?"}, True),
        ({"type": "SKIP_RESULT", "resource_ids": "C017NG64T24"}, False),
    ],
)
def test_message_fields_are_type_checked(msg: dict[str, object], ok: bool) -> None:
    assert (protocol.check_fields(msg) is None) is ok


def test_any_chunking_yields_the_same_lines() -> None:
    import random

    rng = random.Random(7)
    lines = [b'{"n": %d}' % i for i in range(300)] + [b"x" * 50, b"crlf\r", b"", "\u2028".encode()]
    rng.shuffle(lines)
    blob = b"\n".join(lines) + b"\nTAIL"
    expected: list[bytes | LineError] = [
        LineError("line_too_long", "line of 50 bytes exceeds the 40-byte limit", 50)
        if line == b"x" * 50
        else line.removesuffix(b"\r")
        for line in lines
    ] + [b"TAIL"]
    for _ in range(100):
        s = LineSplitter(40)
        got: list[bytes | LineError] = []
        i = 0
        while i < len(blob):
            step = rng.randint(1, 64)
            got += s.feed(blob[i : i + step])
            i += step
        assert got + s.finish() == expected
