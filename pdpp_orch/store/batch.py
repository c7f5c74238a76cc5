"""A batch: one flush transaction's worth of what a connector said, in the order it said it."""

from __future__ import annotations

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
class ContinuationRow:
    """A runtime-owned continuation a connector reported (SKIP_RESULT.continuation): the bounded
    page it finished and that more is planned. Its content is the connector's, cursor-like: it
    stays in PostgreSQL."""

    stream: str
    line_no: int
    reason: str
    fact_json: str
    message: str | None


@dataclass
class Flush:
    """One transaction's worth of work, in the order the connector emitted it."""

    # (stream, key) -> its latest version in the batch (copydata.Row). The rows keep the lines
    # they came from until they are written: a record PostgreSQL refuses is quarantined as its
    # line, and the COPY data is made from them as it is sent.
    records: dict[tuple[str, str], copydata.Row] = field(default_factory=dict)
    gaps: list[NewGap] = field(default_factory=list)
    quarantine: list[QuarantineRow] = field(default_factory=list)
    recovered_gap_ids: list[str] = field(default_factory=list)
    checkpoints: list[CheckpointWrite] = field(default_factory=list)
    continuations: list[ContinuationRow] = field(default_factory=list)
    spine: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    accepted: int = 0
    bytes: int = 0

    @property
    def rows(self) -> int:
        return len(self.records)

    def upserts(self) -> list[tuple[tuple[str, str], copydata.Row]]:
        """The rows that are written (COPY): all but the deletes of keys this batch did not write."""
        return [(k, row) for k, row in self.records.items() if row[1] != copydata.DELETE_STORED]

    def deletes(self) -> list[tuple[str, str]]:
        """(stream, key) of the deletes of keys this batch did not write: they mark a stored
        record deleted, and store nothing for a key never stored (as in the reference)."""
        return [k for k, row in self.records.items() if row[1] == copydata.DELETE_STORED]

    def empty(self) -> bool:
        return not (
            self.records
            or self.gaps
            or self.quarantine
            or self.recovered_gap_ids
            or self.checkpoints
            or self.continuations
        )


@dataclass(frozen=True)
class RefusedRecord:
    """A record PostgreSQL would not store (what the full JSON check says of it), with the line
    it came from."""

    stream: str
    key: str
    kind: str
    detail: str
    line: bytes
    line_no: int


@dataclass
class FlushResult:
    gaps_recovered: int
    conflicted: bool = False
    # Records left out of the batch; no checkpoint after the first of them was written.
    refused: list[RefusedRecord] = field(default_factory=list)
