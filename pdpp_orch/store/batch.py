"""A batch: one flush transaction's worth of what a connector said, in the order it said it."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any

from pdpp_orch.store import copydata
from pdpp_orch.store.gaps import NewGap


@dataclass
class QuarantineRow:
    """A line that failed validation, truncated, with its line number."""

    line_no: int
    kind: str
    detail: str
    line_bytes: int
    excerpt: str


@dataclass
class CheckpointWrite:
    """A proven STATE, written as the run's resume point with the records before it."""

    stream: str
    seq: int
    cursor_json: str
    cursor_bytes: int
    facts_json: str


@dataclass
class Flush:
    """One transaction's worth of work, in the order the connector emitted it."""

    # (stream, key) -> its latest version in the batch: (data JSON, deleted, line number)
    records: dict[tuple[str, str], copydata.Row] = field(default_factory=dict)
    # What `seal` turns the records into: their COPY data, how many rows that holds, and each
    # row's line number (for the rare batch PostgreSQL refuses part of).
    payload: bytes = b""
    rows: int = 0
    lines: array[int] = field(default_factory=lambda: array("q"))
    # (stream, key) of the tombstones written as the version they follow (copydata.Row).
    carried: list[tuple[str, str]] = field(default_factory=list)
    gaps: list[NewGap] = field(default_factory=list)
    quarantine: list[QuarantineRow] = field(default_factory=list)
    recovered_gap_ids: list[str] = field(default_factory=list)
    checkpoints: list[CheckpointWrite] = field(default_factory=list)
    spine: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    accepted: int = 0
    bytes: int = 0

    def seal(self, connector: str, run_id: str) -> None:
        """Turn the records into their COPY data and let the records go: a batch waiting for
        its write then holds its data once, not twice."""
        if not self.records:
            return
        self.payload = copydata.encode(connector, run_id, self.records)
        self.rows = len(self.records)
        self.lines = array("q", [line_no for _, _, line_no in self.records.values()])
        self.carried = [k for k, (_, state, _) in self.records.items() if state == copydata.CARRIED_TOMBSTONE]
        self.records = {}

    def empty(self) -> bool:
        return not (
            self.records
            or self.rows
            or self.gaps
            or self.quarantine
            or self.recovered_gap_ids
            or self.checkpoints
        )


@dataclass(frozen=True)
class RefusedRecord:
    """A record whose data PostgreSQL would not store (what the full JSON check says of it)."""

    stream: str
    key: str
    kind: str
    detail: str
    data: bytes
    line_no: int


@dataclass
class FlushResult:
    gaps_recovered: int
    conflicted: bool = False
    # Records left out of the batch; no checkpoint after the first of them was written.
    refused: list[RefusedRecord] = field(default_factory=list)
