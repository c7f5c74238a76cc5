"""Bad connector output, property-based (issue 7): the line reader, the collect loop and the
outcome hold their invariants for random bytes, truncated JSON, NaN/Infinity, integers beyond 64
bits, deep nesting, invalid UTF-8, U+2028 inside strings, duplicate keys, wrong types for every
field of every message type, keys that do not match the primary key and out-of-scope streams.

Hypothesis runs derandomized (the same examples on every run) with a small example count per
test, so the file stays well under a minute next to a real PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from activities.collect import Collector
from activities.sandbox import Sandbox
from pdpp_orch import protocol
from pdpp_orch.manifest import load_manifest
from pdpp_orch.models import (
    CheckpointFact,
    CollectFacts,
    CommitResult,
    CoverageFact,
    Mode,
    RecoveryClass,
    RetryPlan,
    RunError,
    RunFacts,
    RunInput,
    RunStatus,
    StreamCommit,
    StreamFacts,
    StreamScope,
    Trigger,
    Violation,
)
from pdpp_orch.outcome import derive_outcome
from pdpp_orch.protocol import LineError, LineSplitter
from pdpp_orch.registry import ConnectorEntry
from pdpp_orch.sandbox_config import GrantedPath
from pdpp_orch.store import Store
from tests.conftest import CONNECTORS
from tests.helpers import fuzz

REPLAY = CONNECTORS / "replay.py"


# -- JSON values ---------------------------------------------------------------------------------

# Strings the runtime must carry unchanged: U+2028/U+2029 are data, not line breaks.
TEXT = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=10),
    st.sampled_from(["\u2028", "a\u2029b", "x\u2028\u2029y", "😀", "é", "\\", '"', "\r", "\t"]),
)
# Text the reference requires not to be blank (a key part, a message, a request id).
NONBLANK = TEXT.filter(lambda t: bool(t.strip()))
EDGE_INTS = [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, -(10**19) + 1, 10**30, -(10**30)]
SMALL_INTS = st.integers(-(2**62), 2**62)
ANY_INTS = st.one_of(SMALL_INTS, st.integers(-(2**200), 2**200), st.sampled_from(EDGE_INTS))
KEYS = st.one_of(st.sampled_from(["id", "type", "x", "\u2028", ""]), TEXT)


def json_values(ints: st.SearchStrategy[int] = ANY_INTS, leaves: int = 10) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(), st.booleans(), ints, st.floats(allow_nan=False, allow_infinity=False), TEXT
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
        max_leaves=leaves,
    )


ANY_VALUES = json_values()


def nested(depth: int, leaf: bytes = b"0") -> bytes:
    """JSON text `depth` containers deep (objects and arrays by turns), written by hand: the
    stdlib writer itself would run out of stack."""
    opens = [b"[" if i % 2 else b'{"n":' for i in range(depth)]
    closes = [b"]" if i % 2 else b"}" for i in reversed(range(depth))]
    return b"".join(opens) + leaf + b"".join(closes)


# -- lines and what each must become --------------------------------------------------------------

IN_SCOPE = ("a", "b")  # the run asks for a and b; c is in the manifest but not requested
PK = {"a": ["id"], "b": ["user", "chan"], "c": ["id"]}
FUZZ_MANIFEST = {
    "connector_key": "fuzz",
    "streams": [{"name": name, "primary_key": pk} for name, pk in PK.items()],
}
RECORD_LINE = "RECORD"  # accepted and durable
OK = "OK"  # accepted, not a record
DONE = "DONE"  # the first acceptable DONE
BLANK = "BLANK"  # framing noise: not a message, not a violation
SOME_VIOLATION = "!"  # a violation of whatever kind (random bytes)
EITHER = "?"  # a field the runtime does not check: accepted or a violation
DECODE_KINDS = {"invalid_json", "not_an_object", "unknown_type"}
LINE_KINDS = DECODE_KINDS | {
    "schema_invalid",
    "key_mismatch",
    "unknown_stream",
    "out_of_scope_stream",
    "message_after_done",
    "line_too_long",
    "invalid_recovery_hint",
}


@dataclass
class Line:
    raw: bytes
    expect: str  # one of the markers above, or the violation kind
    record: bool = False  # decodes as a RECORD (counted against DONE.records_emitted)
    stream: str = ""
    key: str = ""
    clean: bool = True  # cannot keep a run from succeeding when accepted
    whole: bool = True  # a complete JSON object text, however wrong its content


@dataclass
class Script:
    lines: list[Line]
    trailing_newline: bool
    exit_code: int

    def data(self) -> bytes:
        return b"\n".join(line.raw for line in self.lines) + (b"\n" if self.trailing_newline else b"")


def enc(draw: st.DrawFn, obj: Any) -> bytes:
    ascii_only = draw(st.booleans())
    seps = draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    return json.dumps(obj, ensure_ascii=ascii_only, separators=seps).encode()


ACTIONS = sorted(protocol.RECOVERY_ACTIONS)
HINTS = st.one_of(
    st.sampled_from(ACTIONS),
    st.builds(
        lambda a, r: {"action": a, **({"retryable": r} if r is not None else {})},
        st.sampled_from(ACTIONS),
        st.none() | st.booleans(),
    ),
)


@st.composite
def record_msg(draw: st.DrawFn, n: int, stream: str | None = None) -> tuple[dict[str, Any], str]:
    """A valid RECORD with a key unique to line `n`; returns it and its storage key."""
    stream = stream or draw(st.sampled_from(IN_SCOPE))
    suffix = draw(st.sampled_from(["", "\u2028", " é", "\t", "\\", '"']))
    data: dict[str, Any] = draw(st.dictionaries(st.sampled_from(["x", "y", "z"]), ANY_VALUES, max_size=3))
    if stream == "b":
        user, chan = f"u{n}{suffix}", draw(NONBLANK)
        data.update(user=user, chan=chan)
        key: str | list[str] = [user, chan]
        storage = orjson.dumps(key).decode()
    elif draw(st.booleans()):
        ident = draw(st.sampled_from([n, 10**25 + n, -(2**63) - 1 - n, 2**64 + n]))
        data["id"] = ident
        key = storage = str(ident)
    else:
        key = storage = data["id"] = f"k{n}{suffix}"
    msg = {"type": "RECORD", "stream": stream, "key": key, "data": data, "emitted_at": "2026-11-26T00:00:00Z"}
    if draw(st.booleans()):
        msg["op"] = "delete"
    return msg, storage


def other_msg(draw: st.DrawFn, t: str, stream: str | None = None) -> dict[str, Any]:
    """A valid message of type `t` (not RECORD, not DONE)."""
    s = stream or draw(st.sampled_from(IN_SCOPE))
    if t == "STATE":
        return {
            "type": t,
            "stream": s,
            "cursor": draw(st.none() | st.dictionaries(KEYS, ANY_VALUES, max_size=3)),
        }
    if t == "PROGRESS":
        return {
            "type": t,
            "message": draw(NONBLANK),
            "stream": s,
            "count": draw(st.integers(0, 2**62)),
            "total": draw(st.integers(0, 2**200) | st.floats(0, 1e300)),
        }
    if t == "SKIP_RESULT":
        msg = {"type": t, "stream": s, "reason": draw(TEXT), "message": draw(TEXT)}
        if draw(st.booleans()):
            msg["resource_ids"] = draw(st.lists(TEXT | SMALL_INTS, max_size=3))
        if draw(st.booleans()):
            msg["recovery_hint"] = draw(HINTS)
        if draw(st.booleans()):
            msg["diagnostics"] = {"retry_after_seconds": draw(st.integers(0, 10**30) | st.floats(0, 1e300))}
        if draw(st.booleans()):
            msg["time_range"] = {"since": "2026-01-01", "until": "2026-02-01"}
        return msg
    if t == "DETAIL_GAP":
        msg = {"type": t, "stream": s, "reason": draw(TEXT), "retryable": draw(st.booleans())}
        msg["record_key"] = draw(st.none() | TEXT | st.lists(TEXT, max_size=2))
        msg["detail_locator"] = draw(TEXT | st.dictionaries(KEYS, ANY_VALUES, max_size=2))
        if draw(st.booleans()):
            msg["last_error"] = draw(ANY_VALUES)
        if draw(st.booleans()):
            msg["retry_after_seconds"] = draw(st.integers(0, 10**30) | st.floats(0, 1e300))
        return msg
    if t == "DETAIL_COVERAGE":
        keys = st.lists(TEXT, max_size=3)
        return {
            "type": t,
            "reference_only": True,
            "stream": s,
            "state_stream": s,
            "required_keys": draw(keys | st.integers(0, 5)),
            "hydrated_keys": draw(keys | st.integers(0, 5)),
            "gap_keys": draw(keys | st.integers(0, 5)),
        }
    if t in ("DETAIL_GAP_RECOVERED", "DETAIL_GAP_ATTEMPTED"):
        return {"type": t, "gap_id": draw(TEXT), "stream": s, "lease_id": "l1"}
    if t == "INTERACTION":
        return {
            "type": t,
            "request_id": draw(NONBLANK),
            "kind": draw(st.sampled_from(["credentials", "otp", "manual_action"])),
            "message": draw(NONBLANK),
            "timeout_seconds": 60,
        }
    raise AssertionError(t)


# Messages that never open a gap or leave coverage unaccounted when accepted.
CLEAN_TYPES = {"STATE", "PROGRESS", "DETAIL_GAP_RECOVERED", "DETAIL_GAP_ATTEMPTED"}
OTHER_TYPES = [*sorted(CLEAN_TYPES), "SKIP_RESULT", "DETAIL_GAP", "DETAIL_COVERAGE", "INTERACTION"]

# For every field of every message type: whether a value is of the right type, and whether the
# runtime checks it (a wrong type is then a violation of that kind; else it may be accepted).
IS_STR = lambda v: isinstance(v, str)  # noqa: E731
IS_DICT = lambda v: isinstance(v, dict)  # noqa: E731
IS_LIST = lambda v: isinstance(v, list)  # noqa: E731


def is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def is_amount(v: Any) -> bool:
    """A non-negative number JavaScript reads as finite (PROGRESS counts)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < 2**1024 and v == v


def nonblank(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


Check = tuple[Any, str | None, bool]  # (right type?, violation kind or None = unchecked, required)
FIELDS: dict[str, dict[str, Check]] = {
    "RECORD": {
        "stream": (IS_STR, "unknown_stream", True),
        "key": (
            lambda v: (
                (isinstance(v, str) and v != "") or (IS_LIST(v) and v and all(map(IS_STR, v)) and all(v))
            ),
            "schema_invalid",
            True,
        ),
        "data": (IS_DICT, "schema_invalid", True),
        "op": (lambda v: v == "delete", "schema_invalid", False),
        "emitted_at": (lambda v: isinstance(v, str) and v != "", "schema_invalid", True),
    },
    "STATE": {
        "stream": (IS_STR, "schema_invalid", True),
        "cursor": (lambda v: v is None or IS_DICT(v), "schema_invalid", False),  # absent: null
    },
    "SKIP_RESULT": {
        "stream": (IS_STR, "schema_invalid", False),
        "reason": (IS_STR, "schema_invalid", False),
        "message": (IS_STR, "schema_invalid", False),
        "resource_ids": (IS_LIST, "schema_invalid", False),
        "time_range": (IS_DICT, "schema_invalid", False),
        "diagnostics": (IS_DICT, None, False),  # any JSON, as in the reference
        "recovery_hint": (lambda v: v in ACTIONS, "invalid_recovery_hint", False),
    },
    "DETAIL_GAP": {
        "stream": (IS_STR, "schema_invalid", True),
        "parent_stream": (IS_STR, "schema_invalid", False),
        "reason": (IS_STR, "schema_invalid", False),
        "retryable": (lambda v: isinstance(v, bool), "schema_invalid", False),
        "detail_locator": (lambda v: IS_STR(v) or IS_DICT(v), "schema_invalid", False),
        "gap_id": (IS_STR, "schema_invalid", False),
        "record_key": (lambda v: IS_STR(v) or IS_LIST(v), "schema_invalid", False),
        "recovery_hint": (lambda v: v in ACTIONS, "invalid_recovery_hint", False),
        "last_error": (IS_DICT, None, False),
    },
    "DETAIL_COVERAGE": {
        "stream": (IS_STR, "schema_invalid", True),
        "state_stream": (IS_STR, "schema_invalid", False),
        "required_keys": (lambda v: IS_LIST(v) or is_count(v), "schema_invalid", True),
        "hydrated_keys": (lambda v: IS_LIST(v) or is_count(v), "schema_invalid", False),
        "gap_keys": (lambda v: IS_LIST(v) or is_count(v), "schema_invalid", False),
        "considered": (is_count, None, False),
    },
    "DETAIL_GAP_RECOVERED": {
        "gap_id": (IS_STR, "schema_invalid", True),
        "stream": (IS_STR, "schema_invalid", True),
        "lease_id": (IS_STR, None, False),
    },
    "DETAIL_GAP_ATTEMPTED": {
        "gap_id": (IS_STR, "schema_invalid", True),
        "stream": (IS_STR, "schema_invalid", True),
        "lease_id": (IS_STR, None, False),
    },
    "PROGRESS": {
        "message": (nonblank, "schema_invalid", False),
        "stream": (nonblank, "schema_invalid", False),
        "count": (is_amount, "schema_invalid", False),
        "total": (is_amount, "schema_invalid", False),
    },
    "INTERACTION": {
        "request_id": (nonblank, "schema_invalid", True),
        "kind": (lambda v: v in ("credentials", "otp", "manual_action"), "schema_invalid", True),
        "message": (nonblank, "schema_invalid", False),
    },
    "DONE": {
        "status": (lambda v: v in ("succeeded", "failed", "cancelled"), "schema_invalid", True),
        "records_emitted": (is_count, "schema_invalid", True),
        "error": (IS_DICT, "schema_invalid", False),
    },
}


def done_msg(draw: st.DrawFn, seen_records: int) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "type": "DONE",
        "status": draw(st.sampled_from(["succeeded", "succeeded", "failed", "cancelled"])),
        "records_emitted": seen_records + draw(st.sampled_from([0, 0, 0, 0, 1])),
    }
    if msg["status"] != "succeeded":
        msg["error"] = {"message": draw(TEXT), "retryable": draw(st.booleans()), "code": "upstream_down"}
    return msg


def valid_any(draw: st.DrawFn, n: int, seen: int) -> dict[str, Any]:
    t = draw(st.sampled_from(["RECORD", *OTHER_TYPES, "DONE"]))
    if t == "RECORD":
        return draw(record_msg(n))[0]
    if t == "DONE":
        return done_msg(draw, seen)
    return other_msg(draw, t)


SENTINEL = "\x01SENTINEL\x01"


def with_token(
    draw: st.DrawFn, msg: dict[str, Any], token: bytes, into: dict[str, Any] | None = None
) -> bytes:
    """`msg` with `token` spliced in raw as the value of an extra field (of `into`, a part of
    `msg`, if given), and sometimes an integer beyond 64 bits elsewhere so the exact-integer
    parser sees the line too."""
    (msg if into is None else into)["x_"] = SENTINEL
    if draw(st.booleans()):
        msg["big_"] = 10**25
    raw = enc(draw, msg)
    quoted = json.dumps(SENTINEL).encode()
    assert raw.count(quoted) == 1
    return raw.replace(quoted, token)


CATEGORIES = [
    *["record"] * 6,
    *["other"] * 3,
    "done",
    *["wrong_type"] * 4,
    "missing",
    "scope",
    "key_mismatch",
    "nul",
    "truncated",
    "nan",
    "bad_utf8",
    "surrogate",
    "deep",
    "duplicate_keys",
    "random",
    "blank",
]


@st.composite
def scripts(draw: st.DrawFn, max_lines: int = 16) -> Script:
    """What a (misbehaving) connector writes, line by line, with what each line must become."""
    lines: list[Line] = []
    seen_records = 0  # RECORD messages before DONE, as the runtime counts them for DONE
    n_lines = draw(st.integers(0, max_lines))
    # Some connectors behave, so that the properties are seen to hold for good runs too.
    behaves = draw(st.sampled_from([False, False, True]))
    for i in range(n_lines):
        n = i + 1
        cat = draw(st.sampled_from(["record", "record", "clean_other", "blank"] if behaves else CATEGORIES))
        line: Line
        if cat == "record":
            msg, key = draw(record_msg(n))
            line = Line(enc(draw, msg), RECORD_LINE, True, msg["stream"], key)
        elif cat in ("other", "clean_other"):
            t = draw(st.sampled_from(OTHER_TYPES if cat == "other" else sorted(CLEAN_TYPES)))
            line = Line(enc(draw, other_msg(draw, t)), OK, clean=t in CLEAN_TYPES)
        elif cat == "done":
            msg = done_msg(draw, seen_records)
            line = Line(enc(draw, msg), DONE, clean=msg["records_emitted"] == seen_records)
        elif cat in ("wrong_type", "missing"):
            t = draw(
                st.sampled_from(
                    sorted(
                        t
                        for t, fs in FIELDS.items()
                        if cat == "wrong_type" or any(r for _, _, r in fs.values())
                    )
                )
            )
            rec_key = ""
            if t == "RECORD":
                base, rec_key = draw(record_msg(n))
            else:
                base = done_msg(draw, seen_records) if t == "DONE" else other_msg(draw, t)
            fields = FIELDS[t]
            if cat == "missing":
                f = draw(st.sampled_from([f for f, (_, _, required) in fields.items() if required]))
                kind = fields[f][1]
                if draw(st.booleans()):
                    base[f] = None
                else:
                    base.pop(f, None)
            else:
                f = draw(st.sampled_from(sorted(fields)))
                right, kind, _ = fields[f]
                base[f] = draw(ANY_VALUES.filter(lambda v, right=right: v is not None and not right(v)))
            # A delete needs no data: a tombstone is addressed by its key alone.
            tombstone = t == "RECORD" and f == "data" and base.get("op") == "delete"
            if t == "RECORD" and (kind is None or tombstone):  # a field the runtime never reads
                line = Line(enc(draw, base), RECORD_LINE, True, base["stream"], rec_key, clean=False)
            else:
                line = Line(enc(draw, base), kind or EITHER, t == "RECORD", clean=False)
        elif cat == "scope":
            t = draw(st.sampled_from(["RECORD", "STATE", "SKIP_RESULT", "DETAIL_GAP", "DETAIL_COVERAGE"]))
            stream = draw(st.sampled_from(["c", "zz", "\u2028"]))
            kind = "out_of_scope_stream" if stream == "c" else "unknown_stream"
            msg = draw(record_msg(n, stream))[0] if t == "RECORD" else other_msg(draw, t, stream)
            line = Line(enc(draw, msg), kind, t == "RECORD", clean=False)
        elif cat == "key_mismatch":
            msg, key = draw(record_msg(n))
            how = draw(st.sampled_from(["other", "other_part", "shorter", "longer", "missing"]))
            if how == "other":
                msg["key"] = ["nope", "nope"] if msg["stream"] == "b" else f"other-{n}"
                line = Line(enc(draw, msg), "key_mismatch", True, clean=False)
            elif how == "other_part":  # the first part agrees, a later one does not
                msg["key"] = [msg["key"][0], "nope"] if msg["stream"] == "b" else [key, key]
                msg["data"]["chan"] = "chan"
                expect = "key_mismatch" if msg["stream"] == "b" else RECORD_LINE
                line = Line(enc(draw, msg), expect, True, msg["stream"], orjson.dumps(msg["key"]).decode())
            else:
                # The reference's tolerance: parts the key lacks, parts beyond the primary key
                # and fields data lacks are not compared. The key is stored as sent.
                if how == "shorter":
                    msg["key"] = [msg["key"][0]] if msg["stream"] == "b" else msg["key"]
                elif how == "longer":
                    msg["key"] = [*msg["key"], "extra"] if msg["stream"] == "b" else [key, "extra"]
                else:
                    msg["data"].pop(PK[msg["stream"]][0])
                stored = msg["key"] if isinstance(msg["key"], str) else orjson.dumps(msg["key"]).decode()
                line = Line(enc(draw, msg), RECORD_LINE, True, msg["stream"], stored)
        elif cat == "nul":
            t = draw(st.sampled_from(["RECORD", *OTHER_TYPES]))
            if t == "RECORD":
                msg = draw(record_msg(n))[0]
                msg["data"]["x"] = "a\x00b"
            else:
                msg = other_msg(draw, t)
                msg["x"] = {"note": "\x00"}
            line = Line(enc(draw, msg), "schema_invalid", t == "RECORD", clean=False)
        elif cat == "truncated":
            raw = enc(draw, valid_any(draw, n, seen_records))
            line = Line(raw[: draw(st.integers(1, len(raw) - 1))], "invalid_json", clean=False, whole=False)
        elif cat in ("nan", "bad_utf8", "surrogate"):
            token = draw(
                st.sampled_from(
                    {
                        "nan": [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999", b"[1, NaN]"],
                        "bad_utf8": [b'"\xff"', b'"a\xc0\x80"', b'"\xed\xa0\x80"', b'"\xe2\x82"', b'"\x80"'],
                        "surrogate": [b'"\\ud800"', b'"x\\udc00"', b'"\\ud83d"', b'"\\ude00\\ud83d"'],
                    }[cat]
                )
            )
            if draw(st.booleans()):
                msg, key = draw(record_msg(n))
                # A RECORD's data, and the fields the runtime skips, are read as JSON text: a
                # number beyond a double is valid JSON there (PostgreSQL keeps it exactly).
                raw = with_token(draw, msg, token, into=msg["data"] if draw(st.booleans()) else None)
                big = token in (b"1e400", b"-1e999")
                line = Line(raw, RECORD_LINE if big else "invalid_json", True, msg["stream"], key, clean=big)
            else:
                other = valid_any(draw, n, seen_records)
                if other["type"] == "RECORD":  # a RECORD's skipped fields may hold 1e400: above
                    other = other_msg(draw, "STATE")
                raw = with_token(draw, other, token)
                line = Line(raw, "invalid_json", clean=False)
        elif cat == "deep":
            msg, key = draw(record_msg(n))
            depth = draw(st.sampled_from([1, 100, 250, 251, 252, 253, 300, 1000, 1030, 5000]))
            raw = with_token(draw, msg, nested(depth), into=msg["data"])
            ok = depth + 2 <= protocol.MAX_NESTING  # the message, its data, then `depth` more
            line = Line(raw, RECORD_LINE if ok else "invalid_json", ok, msg["stream"], key, clean=ok)
        elif cat == "duplicate_keys":
            msg, key = draw(record_msg(n))
            raw = enc(draw, msg)
            how = draw(st.sampled_from(["before", "type_after", "stream_after"]))
            if how == "before":  # the last occurrence wins, in both parsers
                bogus = draw(
                    st.sampled_from([b'"type":"HELLO",', b'"key":7,', b'"stream":"zz",', b'"data":null,'])
                )
                line = Line(b"{" + bogus + raw[1:], RECORD_LINE, True, msg["stream"], key, clean=False)
            elif how == "type_after":
                line = Line(raw[:-1] + b',"type":"HELLO"}', "unknown_type", clean=False)
            else:
                line = Line(raw[:-1] + b',"stream":"c"}', "out_of_scope_stream", True, clean=False)
        elif cat == "random":
            # Without NUL bytes: test_collect_classifies_lines_it_used_to_raise_on has those.
            raw = draw(st.binary(max_size=40)).replace(b"\n", b"").replace(b"\x00", b"")
            stripped = raw[:-1] if raw.endswith(b"\r") else raw
            blank = len(stripped) < 8 and not stripped.strip()
            line = Line(raw, BLANK if blank else SOME_VIOLATION, clean=blank, whole=False)
        else:
            line = Line(draw(st.sampled_from([b"", b"  ", b"\r", b" \t "])), BLANK, whole=False)
        if line.record and not any(x.expect == DONE for x in lines):
            seen_records += 1
        lines.append(line)
    if behaves:
        msg = done_msg(draw, seen_records)
        msg["records_emitted"] = seen_records
        lines.append(Line(enc(draw, msg), DONE))
    trailing = draw(st.booleans())
    while lines and not trailing and lines[-1].raw == b"":
        lines.pop()  # an empty unterminated tail is no line at all
    dones = [x for x in lines if x.expect == DONE]
    status = orjson.loads(dones[0].raw)["status"] if dones else None
    exit_code = draw(st.sampled_from([0, 1])) if status is None else int(status != "succeeded")
    if dones and draw(st.sampled_from([False] * 9 + [True])):
        exit_code = 1 - exit_code
    return Script(lines, trailing, exit_code)


def expected(script: Script) -> list[str]:
    """What each line must become in the collect loop: after the first DONE every message is a
    violation of its own, except those that were not readable messages in the first place."""
    out: list[str] = []
    done = False
    for line in script.lines:
        e = line.expect
        if done and e not in (BLANK, SOME_VIOLATION) and e not in DECODE_KINDS:
            e = "message_after_done"
        if e == DONE:
            done = True
        out.append(e)
    return out


# -- the line reader, pure -------------------------------------------------------------------------


def reference_split(data: bytes, limit: int) -> list[bytes | LineError]:
    pieces = data.split(b"\n")
    tail = pieces.pop()
    out: list[bytes | LineError] = []
    for raw in [*pieces, *([tail] if tail else [])]:
        text = raw[:-1] if raw.endswith(b"\r") else raw
        if len(text) > limit:
            out.append(
                LineError(
                    "line_too_long", f"line of {len(raw)} bytes exceeds the {limit}-byte limit", len(raw)
                )
            )
        else:
            out.append(text)
    return out


LINE_BYTES = st.lists(
    st.sampled_from(
        [b"\n", b"\r", b"\r\n", b"a", b"{}", "\u2028".encode(), "\u2029".encode(), b"xyz" * 5, b" "]
    ),
    max_size=30,
).map(b"".join)


@fuzz(400)
@given(
    data=LINE_BYTES | st.binary(max_size=80),
    limit=st.integers(1, 24),
    cuts=st.lists(st.integers(0, 80), max_size=8),
)
def test_line_splitting_does_not_depend_on_how_the_bytes_arrive(
    data: bytes, limit: int, cuts: list[int]
) -> None:
    """Every line comes out once, in order, split on \\n only (U+2028 is data), with one \\r
    stripped, too-long lines reported with their size, however the stream is chunked."""
    splitter = LineSplitter(limit)
    out: list[bytes | LineError] = []
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for lo, hi in itertools.pairwise(bounds):
        out += splitter.feed(data[lo:hi])
    out += splitter.finish()
    assert out == reference_split(data, limit)


@fuzz(300)
@given(line=st.binary(max_size=200))
def test_any_bytes_decode_to_a_message_or_a_classified_error(line: bytes) -> None:
    result = protocol.decode(line)
    if isinstance(result, LineError):
        assert result.kind in DECODE_KINDS and result.detail
    else:
        assert isinstance(result, dict) and result["type"] in protocol.MESSAGE_TYPES


def classify(line: bytes, pk: list[str]) -> str:
    """The protocol-level verdict on one line, as the collect loop reaches it: a violation
    kind, or the message type."""
    env = protocol.record_envelope(line)
    if env is not None:
        key = protocol.RecordRules(pk).key(env)
        return key.kind if isinstance(key, LineError) else "RECORD"
    msg = protocol.decode(line)
    if isinstance(msg, LineError):
        return msg.kind
    if msg["type"] == "RECORD":
        key = protocol.record_key(msg, pk)
        return key.kind if isinstance(key, LineError) else "RECORD"
    err = protocol.check_fields(msg)
    return err.kind if err else msg["type"]


@fuzz(300)
@given(line=st.binary(max_size=200) | st.builds(lambda s: s.data(), scripts(max_lines=1)))
def test_any_bytes_have_an_envelope_or_are_decoded(line: bytes) -> None:
    """The collect loop reads a RECORD from its envelope or decodes the line whole: neither
    raises, and an envelope is only read of a RECORD."""
    env = protocol.record_envelope(line)
    assert env is None or env.type == "RECORD"
    if env is not None:
        key = protocol.RecordRules(["id"]).key(env)
        assert isinstance(key, str) or key.kind in ("schema_invalid", "key_mismatch")


@fuzz(300)
@given(script=scripts(max_lines=4))
def test_a_record_read_from_its_envelope_is_the_record_decoded_whole(script: Script) -> None:
    """Both ways of reading a RECORD agree on every line both can read: the same verdict, the
    same storage key, and data that is the same JSON. (Only the envelope reads a number beyond
    a double, which PostgreSQL keeps exactly.)"""
    for line in script.lines:
        msg = protocol.decode(line.raw)
        env = protocol.record_envelope(line.raw)
        if isinstance(msg, LineError) or msg["type"] != "RECORD":
            assert env is None or isinstance(msg, LineError), line
            continue
        stream = msg.get("stream")
        pk = PK.get(stream, ["id"]) if isinstance(stream, str) else ["id"]
        if env is None:  # a field of the wrong type (or a duplicate's): the loop decodes it whole
            continue
        whole, read = protocol.record_key(msg, pk), protocol.RecordRules(pk).key(env)
        assert whole == read or (
            isinstance(whole, LineError) and isinstance(read, LineError) and whole.kind == read.kind
        ), line
        if bytes(memoryview(env.data)[:1]) == b"{":  # an object: a delete may come without
            assert json.loads(bytes(env.data)) == msg["data"]


@fuzz(300)
@given(script=scripts(max_lines=4))
def test_every_generated_line_is_classified_and_what_is_accepted_can_be_written_back(script: Script) -> None:
    for line in script.lines:
        msg = protocol.decode(line.raw)
        if isinstance(msg, LineError):
            assert msg.kind in DECODE_KINDS
            if line.expect in DECODE_KINDS:
                assert msg.kind == line.expect
            continue
        assert line.expect not in DECODE_KINDS, (line, msg)
        if msg["type"] == "RECORD":
            stream = msg.get("stream")
            key = protocol.record_key(msg, PK.get(stream, ["id"]) if isinstance(stream, str) else ["id"])
            if isinstance(key, LineError):
                assert key.kind in ("schema_invalid", "key_mismatch")
                continue
            if line.expect == RECORD_LINE:
                assert key == line.key
            assert json.loads(protocol.dumps(msg.get("data"))) == msg.get("data")
        else:
            err = protocol.check_fields(msg)
            assert err is None or err.kind == "schema_invalid"
            if err is None:
                # Everything collect.py writes of an accepted message can be written.
                protocol.dumps(msg)
                hint = msg.get("recovery_hint")
                if hint is not None:
                    parsed = protocol.parse_recovery_hint(hint)
                    if not isinstance(parsed, LineError):
                        assert isinstance(protocol.recovery_class(msg.get("reason"), *parsed), RecoveryClass)
                wait = protocol.retry_after_seconds(msg)
                if wait is not None:
                    datetime.now(UTC) + timedelta(seconds=wait)  # what collect.py does with it


@fuzz(200)
@given(value=ANY_INTS, pad=st.sampled_from(["", " ", "\u2028"]))
def test_integers_of_any_size_stay_exact(value: int, pad: str) -> None:
    line = json.dumps({"type": "STATE", "stream": "a", "cursor": {"m": value, "s": pad}}, ensure_ascii=False)
    msg = protocol.decode(line.encode())
    assert isinstance(msg, dict)
    got = msg["cursor"]["m"]
    assert type(got) is int and got == value
    assert (
        protocol.dumps(msg["cursor"])
        == json.dumps({"m": value, "s": pad}, separators=(",", ":"), ensure_ascii=False).encode()
    )


@fuzz(300)
@given(script=scripts(max_lines=3), bom=st.booleans())
def test_the_exact_integer_parser_classifies_like_the_fast_one(script: Script, bom: bool) -> None:
    """Lines with integers beyond 64 bits take another parser; it must accept and reject exactly
    what the fast one does (byte order marks, lone surrogates, 1e400, depth)."""
    for line in script.lines:
        if not line.whole:
            continue
        raw = (b"\xef\xbb\xbf" if bom else b"") + line.raw
        fast = classify(raw, ["id"])
        exact = classify(raw[:-1] + b',"big2_":123456789012345678901234567890}', ["id"])
        assert fast == exact, raw


@pytest.mark.parametrize("depth", [1, 200, 250, 251, 252, 253, 254, 255, 1000, 1021, 1022, 1023, 1024, 5000])
@pytest.mark.parametrize("big", [False, True])
def test_nesting_is_accepted_only_as_deep_as_it_can_be_written_back(depth: int, big: bool) -> None:
    deep = nested(depth, b"1000000000000000000000000000000" if big else b"1")
    line = b'{"type":"RECORD","stream":"a","key":"k","emitted_at":"x","data":{"id":"k","deep":' + deep + b"}}"
    msg = protocol.decode(line)
    if depth + 2 > protocol.MAX_NESTING:
        assert isinstance(msg, LineError) and msg.kind == "invalid_json"
    else:
        assert isinstance(msg, dict) and protocol.record_key(msg, ["id"]) == "k"
        assert protocol.dumps(msg["data"]) == b'{"id":"k","deep":' + deep + b"}"


# -- outcome, pure -------------------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "c", "*"])


@st.composite
def collect_facts(draw: st.DrawFn) -> CollectFacts:
    count = draw(st.integers(0, 3) | st.integers(0, 10**6))
    return CollectFacts(
        done_status=draw(st.sampled_from([None, "succeeded", "failed", "cancelled"])),
        done_error_code=draw(st.none() | st.just("stream_collection_failed")),
        done_error_retryable=draw(st.booleans()),
        exit_code=draw(st.none() | st.integers(-9, 3)),
        cancelled=draw(st.booleans()),
        records_emitted=draw(st.integers(0, 10**12)),
        records_durable=draw(st.integers(0, 10**12)),
        records_rejected=draw(st.integers(0, 10**12)),
        violation_count=count,
        violations=[
            Violation(kind=draw(st.sampled_from(sorted(LINE_KINDS))), line_no=i + 1, detail="x")
            for i in range(min(count, draw(st.integers(0, 20))))
        ],
        streams={
            n: StreamFacts(
                stream=n,
                collected=draw(st.integers(0, 100)),
                skipped_by_reason=draw(st.dictionaries(TEXT, st.integers(0, 5), max_size=2)),
                non_informational_skips=draw(st.integers(0, 3)),
                gaps_opened=draw(st.integers(0, 3)),
            )
            for n in draw(st.sets(NAMES, max_size=3))
        },
        checkpoints={
            n: CheckpointFact(
                stream=n, staged=draw(st.integers(0, 3)), proven_seq=draw(st.none() | st.integers(1, 9))
            )
            for n in draw(st.sets(NAMES, max_size=3))
        },
        coverage={
            n: CoverageFact(stream=n, required=draw(st.integers(0, 5)), hydrated=draw(st.integers(0, 5)))
            for n in draw(st.sets(NAMES, max_size=2))
        },
        gaps_opened=draw(st.integers(0, 3)),
        non_informational_skips=draw(st.integers(0, 3)),
        runtime_error=draw(
            st.none() | st.sampled_from(["connector_stalled", "too_many_protocol_violations"])
        ),
    )


def run_facts(
    collect: CollectFacts, commit: CommitResult, *, cancelled: bool = False, error: RunError | None = None
) -> RunFacts:
    now = datetime(2026, 11, 26, tzinfo=UTC)
    return RunFacts(
        input=RunInput(connector="fuzz", run_id="fuzz-1"),
        collect=collect,
        commit=commit,
        plan=RetryPlan(),
        started_at=now,
        finished_at=now,
        cancelled=cancelled,
        error=error,
    )


def every_staged_committed(facts: CollectFacts) -> CommitResult:
    """The kindest commit there can be: no run can do better than this."""
    return CommitResult(
        streams=[StreamCommit(stream=n, committed=True) for n, cp in facts.checkpoints.items() if cp.staged]
    )


@fuzz(400)
@given(
    facts=collect_facts(),
    committed=st.lists(st.tuples(NAMES, st.booleans()), max_size=3),
    checkpoint_gaps=st.integers(0, 2),
    cancelled=st.booleans(),
    error=st.none() | st.just(RunError(kind="runtime_error", message="boom")),
)
def test_a_run_with_any_violation_never_succeeds(
    facts: CollectFacts,
    committed: list[tuple[str, bool]],
    checkpoint_gaps: int,
    cancelled: bool,
    error: RunError | None,
) -> None:
    commit = CommitResult(
        streams=[StreamCommit(stream=n, committed=c) for n, c in committed],
        checkpoint_gaps_opened=checkpoint_gaps,
    )
    for c in (commit, every_staged_committed(facts)):
        o = derive_outcome(run_facts(facts, c, cancelled=cancelled, error=error))
        # Only the workflow's word makes a run cancelled (an attempt's CancelledError may have
        # been a heartbeat timeout).
        assert (o.status is RunStatus.CANCELLED) == cancelled
        if o.status is RunStatus.SUCCEEDED:
            assert not facts.violated and facts.runtime_error is None and error is None
            assert facts.done_status == "succeeded" and o.reason is None
        elif facts.violated and o.status is not RunStatus.CANCELLED:
            assert o.reason == ("runtime_error" if error else "connector_protocol_violation")
        assert (o.records_emitted, o.records_durable, o.records_rejected) == (
            facts.records_emitted,
            facts.records_durable,
            facts.records_rejected,
        )


# -- the collect loop against PostgreSQL ----------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fuzz")
    d.chmod(0o755)  # the sandboxed connector reads its script here, as a uid of its own as root
    (d / "manifest.json").write_text(json.dumps(FUZZ_MANIFEST))
    return d


async def collect(
    store: Store, workdir: Path, data: bytes, exit_code: int, await_eof: bool
) -> tuple[str, str, CollectFacts]:
    """Run the real Collector on a connector that writes `data`; (connector, run id, facts)."""
    name = f"fz{uuid.uuid4().hex[:10]}"
    path = workdir / f"{name}.out"
    path.write_bytes(data)
    entry = ConnectorEntry(
        name=name,
        command=[sys.executable, str(REPLAY)],
        manifest=workdir / "manifest.json",
        env={
            "REPLAY_FILE": str(path),
            "REPLAY_EXIT": str(exit_code),
            "REPLAY_AWAIT_EOF": "1" if await_eof else "0",
        },
        paths=[GrantedPath(path=str(workdir))],
    )
    run = RunInput(connector=name, run_id=f"{name}-run", streams=[StreamScope(name=s) for s in IN_SCOPE])
    await store.runs.start(run.run_id, name, Trigger.MANUAL, Mode.FORWARD)
    sandbox = Sandbox.for_worker(workdir / "worker-data")
    collector = Collector(
        store, entry, load_manifest(entry.manifest), run, attempt=1, heartbeat=lambda _: None, sandbox=sandbox
    )
    return name, run.run_id, await collector.run()


@fuzz(30)
@given(script=scripts())
async def test_records_accepted_are_exactly_the_records_durable(
    store: Store, fuzz_dir: Path, script: Script
) -> None:
    """Against the real Collector and PostgreSQL: the loop never raises; exactly the valid,
    in-scope RECORDs before DONE are durable (as counted and as rows); every other line is
    quarantined under its own line number and kind, or is framing noise; a run with any
    violation does not succeed, and a clean one does."""
    want = expected(script)
    has_done = DONE in want
    name, run_id, facts = await collect(store, fuzz_dir, script.data(), script.exit_code, has_done)

    durable = [line for line, e in zip(script.lines, want, strict=True) if e == RECORD_LINE]
    durable_keys = {(line.stream, line.key) for line in durable}
    # Every key is its line's own: a delete is of a key never stored, and stores nothing.
    stored = {(line.stream, line.key) for line in durable if json.loads(line.raw).get("op") != "delete"}
    rows = await store.pool.fetch("SELECT stream, key FROM records WHERE connector = $1", name)
    assert {(r["stream"], r["key"]) for r in rows} == stored
    assert facts.records_durable == len(durable_keys)
    assert facts.records_durable == facts.records_emitted - facts.records_rejected

    quarantined = {
        r["line_no"]: r["kind"]
        for r in await store.pool.fetch("SELECT line_no, kind FROM quarantine WHERE run_id = $1", run_id)
    }
    for no, e in enumerate(want, start=1):
        if e in (RECORD_LINE, OK, DONE, BLANK):
            assert no not in quarantined, (no, e, quarantined[no], script.lines[no - 1])
        elif e == SOME_VIOLATION:
            assert quarantined.get(no) in DECODE_KINDS, (no, script.lines[no - 1])
        elif e != EITHER:
            assert quarantined.get(no) == e, (no, e, script.lines[no - 1])
    assert set(quarantined) <= set(range(1, len(want) + 1))
    assert facts.lines_quarantined == len(quarantined) <= facts.violation_count
    line_nos = [v.line_no for v in facts.violations]
    assert line_nos == sorted(line_nos) and all(1 <= n <= max(len(want), 1) for n in line_nos)

    for commit in (every_staged_committed(facts), CommitResult()):
        o = derive_outcome(run_facts(facts, commit))
        if facts.violated:
            assert o.status is not RunStatus.SUCCEEDED and o.reason == "connector_protocol_violation"
    clean = (
        has_done
        and want[-1] == DONE
        and all(e in (RECORD_LINE, OK, DONE, BLANK) for e in want)
        and all(line.clean for line in script.lines)
        and (script.exit_code == 0) == (orjson.loads(script.lines[-1].raw)["status"] == "succeeded")
    )
    event(f"clean={clean} violations={min(facts.violation_count, 3)} durable={min(facts.records_durable, 2)}")
    if clean:
        assert not facts.violated, facts.violations
        o = derive_outcome(run_facts(facts, every_staged_committed(facts)))
        status = orjson.loads(script.lines[-1].raw)["status"]
        assert (o.status is RunStatus.SUCCEEDED) == (status == "succeeded"), o


# -- inputs that once made collect raise, each minimal ---------------------------------------------
# NUL bytes in unreadable lines, integers beyond 64 bits in gap fields, huge INTERACTION
# timeouts, the text "\u0000" (a backslash, not NUL) in a record.

DONE_0 = b'{"type":"DONE","status":"succeeded","records_emitted":0}'
DONE_1 = b'{"type":"DONE","status":"succeeded","records_emitted":1}'


@pytest.mark.parametrize(
    ("lines", "kind"),
    [
        pytest.param(
            [b"\x00", DONE_0],
            "invalid_json",
            id="nul-byte-in-an-unreadable-line",
        ),
        pytest.param(
            [b'{"type":"DETAIL_GAP","stream":"a","detail_locator":{"n":18446744073709551616}}', DONE_0],
            None,
            id="big-int-in-detail-locator",
        ),
        pytest.param(
            [b'{"type":"DETAIL_GAP","stream":"a","record_key":[18446744073709551616]}', DONE_0],
            None,
            id="big-int-in-detail-gap-record-key",
        ),
        pytest.param(
            [b'{"type":"DETAIL_GAP","stream":"a","last_error":{"n":18446744073709551616}}', DONE_0],
            None,
            id="big-int-in-last-error",
        ),
        pytest.param(
            [b'{"type":"SKIP_RESULT","stream":"a","time_range":{"since":18446744073709551616}}', DONE_0],
            None,
            id="big-int-in-skip-time-range",
        ),
        pytest.param(
            [
                b'{"type":"DETAIL_COVERAGE","stream":"a","required_keys":1,"gap_keys":[18446744073709551616]}',
                DONE_0,
            ],
            None,
            id="big-int-in-coverage-gap-keys",
        ),
        pytest.param(
            [b'{"type":"INTERACTION","request_id":"r","kind":"otp","timeout_seconds":1e300}', DONE_0],
            None,
            id="interaction-timeout-beyond-datetime",
        ),
        pytest.param(
            [
                b'{"type":"RECORD","stream":"a","key":"k","emitted_at":"x","data":{"id":"k","text":"\\\\u0000"}}',
                DONE_1,
            ],
            RECORD_LINE,
            id="literal-backslash-u0000-text",
        ),
        pytest.param(
            [b'{"type":"RECORD","stream":[],"key":"k","data":{"id":"k"}}', DONE_1],
            "unknown_stream",
            id="record-stream-a-list",
        ),
    ],
)
async def test_collect_classifies_lines_it_used_to_raise_on(
    store: Store, fuzz_dir: Path, lines: list[bytes], kind: str | None
) -> None:
    """The first line is accepted (kind None: as a gap or interaction, RECORD_LINE: as a durable
    record) or quarantined as `kind`; the collect loop never raises."""
    _, run_id, facts = await collect(store, fuzz_dir, b"\n".join(lines) + b"\n", 0, True)
    quarantined = await store.pool.fetch("SELECT line_no, kind FROM quarantine WHERE run_id = $1", run_id)
    if kind in (None, RECORD_LINE):
        assert not facts.violated and not quarantined, facts.violations
        assert facts.records_durable == (kind == RECORD_LINE)
    else:
        assert [(r["line_no"], r["kind"]) for r in quarantined] == [(1, kind)]
