"""PostgreSQL's binary COPY format for the `records` columns: no escaping to do here, no
delimiters for PostgreSQL to scan for. The data is made as COPY sends it, a slice at a time,
from the batch's rows: a batch never holds its records twice."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator

import msgspec

# One column list for the direct COPY and for staging, so one COPY data serves both.
COLUMNS = ["connector", "stream", "key", "data", "deleted", "first_run_id", "last_run_id"]
# One record, by (stream, key): its data JSON, its state, and the number and bytes of the line
# it came from (for a record PostgreSQL refuses, quarantined as that line). A tombstone keeps
# its key and when it was deleted (`updated_at`), never data: its data is JSON null (DESIGN §14).
# A delete of a key this batch did not write is DELETE_STORED: not COPYed, it marks the stored
# record deleted, and stores nothing for a key never stored (as the reference does).
UPSERT, TOMBSTONE, DELETE_STORED = 0, 1, 2
TOMBSTONE_DATA = b"null"
Row = tuple[bytes | msgspec.Raw, int, int, bytes]
Rows = Iterable[tuple[tuple[str, str], Row]]

_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
_TRAILER = b"\xff\xff"
_JSONB_VERSION = b"\x01"
_BOOLS = {True: b"\x00\x00\x00\x01\x01", False: b"\x00\x00\x00\x01\x00"}
SLICE_BYTES = 1 << 18
# The length words of the usual keys and data, made once (a fifth of the cost of a row).
_KEY_LENGTHS = [n.to_bytes(4, "big") for n in range(256)]
_DATA_LENGTHS = [(n + 1).to_bytes(4, "big") + _JSONB_VERSION for n in range(1 << 14)]


def _field(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def encode(connector: str, run_id: str, rows: Iterable[tuple[tuple[str, str], Row]]) -> Iterator[bytearray]:
    """Binary COPY data for `rows`, in the columns of COLUMNS, in pieces of about SLICE_BYTES."""
    count = len(COLUMNS).to_bytes(2, "big")
    head = count + _field(connector.encode())
    run = _field(run_id.encode())
    ends = {state: _BOOLS[state == TOMBSTONE] + run + run for state in (UPSERT, TOMBSTONE)}
    buf = bytearray(_HEADER)
    last, start = None, b""
    key_lengths, data_lengths = _KEY_LENGTHS, _DATA_LENGTHS
    for (stream, key), (data, state, _, _) in rows:
        if stream != last:  # batches are mostly runs of one stream
            last, start = stream, head + _field(stream.encode())
        k = key.encode()
        n = len(data)
        # += on one buffer: a join of six pieces per row costs three times as much.
        buf += start
        buf += key_lengths[len(k)] if len(k) < 256 else len(k).to_bytes(4, "big")
        buf += k
        buf += data_lengths[n] if n < 1 << 14 else (n + 1).to_bytes(4, "big") + _JSONB_VERSION
        buf += data
        buf += ends[state]
        if len(buf) >= SLICE_BYTES:
            yield buf
            buf = bytearray()
    buf += _TRAILER
    yield buf


async def slices(pieces: Iterator[bytearray]) -> AsyncIterator[bytearray]:
    """COPY data as asyncpg reads it."""
    for piece in pieces:
        yield piece
