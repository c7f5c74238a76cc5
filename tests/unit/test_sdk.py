"""The connector SDK's write path (pdpp_orch/connectors/lines.py, sdk.py)."""

from __future__ import annotations

import io
import json
import time

import pytest

from pdpp_orch.connectors import lines
from pdpp_orch.connectors.lines import LineWriter, encode_line
from pdpp_orch.connectors.sdk import Connector


class Counting(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, b: object) -> int:
        self.writes += 1
        return super().write(b)  # type: ignore[arg-type]


def test_lines_are_batched_and_go_out_in_order() -> None:
    out = Counting()
    w = LineWriter(out)
    sent = [encode_line({"type": "RECORD", "n": i, "pad": "x" * (i % 700)}) for i in range(5000)]
    for line in sent:
        w.write(line)
    w.flush()
    assert out.getvalue() == b"".join(sent)
    assert out.writes < len(sent) / 100


def test_a_line_larger_than_the_buffer_goes_out_at_once_after_those_before() -> None:
    out = io.BytesIO()
    w = LineWriter(out)
    w.write(b"small\n")
    big = b"x" * (lines.WRITE_BUFFER_BYTES + 1) + b"\n"
    w.write(big)
    assert out.getvalue() == b"small\n" + big


def test_a_line_older_than_the_flush_interval_goes_out_with_the_next_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    out = io.BytesIO()
    w = LineWriter(out)
    w.write(b"a\n")
    now[0] += lines.WRITE_BUFFER_SECONDS / 2
    w.write(b"b\n")
    assert out.getvalue() == b""
    now[0] += lines.WRITE_BUFFER_SECONDS
    w.write(b"c\n")
    assert out.getvalue() == b"a\nb\nc\n"


@pytest.mark.parametrize(
    "data",
    [{"id": "k", "n": 2**70}, {"id": "k", "by_id": {1: "one"}}, {"id": "k", "text": "\u2028 é"}],
)
def test_every_record_is_one_exact_json_line(data: dict[object, object]) -> None:
    out = io.BytesIO()
    conn = Connector(stdin=io.BytesIO(), stdout=out)
    conn.record("s", "k", data)  # type: ignore[arg-type]
    conn.flush()
    line = out.getvalue()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    msg = json.loads(line)
    assert msg["data"] == json.loads(json.dumps(data)) and msg["key"] == "k"
    assert msg["emitted_at"].endswith("+00:00")
