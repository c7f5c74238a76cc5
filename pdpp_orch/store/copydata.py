"""PostgreSQL's binary COPY format for the `records` columns: no escaping to do here, no
delimiters for PostgreSQL to scan for."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

# One column list for the direct COPY and for staging, so one COPY payload serves both.
COLUMNS = ["connector", "stream", "key", "data", "deleted", "first_run_id", "last_run_id"]
# (data JSON, state, line number) of one record, by (stream, key). A tombstone that follows a
# version of its key in the same batch carries that version's data (and line): it is written as
# that version, then marked deleted (Flush.carried), so that the upsert keeps its data and not
# the version stored before.
UPSERT, TOMBSTONE, CARRIED_TOMBSTONE = 0, 1, 2
Row = tuple[bytes, int, int]

_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
_TRAILER = b"\xff\xff"
_JSONB_VERSION = b"\x01"
_BOOLS = {True: b"\x00\x00\x00\x01\x01", False: b"\x00\x00\x00\x01\x00"}
SLICE_BYTES = 1 << 18


def _field(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def encode(connector: str, run_id: str, rows: dict[tuple[str, str], Row]) -> bytes:
    """Binary COPY data for `rows`, in the columns of COLUMNS."""
    count = len(COLUMNS).to_bytes(2, "big")
    head = count + _field(connector.encode())
    run = _field(run_id.encode())
    ends = {state: _BOOLS[state == TOMBSTONE] + run + run for state in (UPSERT, TOMBSTONE, CARRIED_TOMBSTONE)}
    out = [_HEADER]
    last, start = None, b""
    for (stream, key), (data, state, _) in rows.items():
        if stream != last:  # batches are mostly runs of one stream
            last, start = stream, head + _field(stream.encode())
        k = key.encode()
        out.append(
            b"".join(
                (
                    start,
                    len(k).to_bytes(4, "big"),
                    k,
                    (len(data) + 1).to_bytes(4, "big"),
                    _JSONB_VERSION,
                    data,
                    ends[state],
                )
            )
        )
    out.append(_TRAILER)
    return b"".join(out)


def decode(payload: bytes) -> Iterator[tuple[str, str, bytes, bool]]:
    """(stream, key, data JSON, deleted) of each row of `encode`'s data, in order."""
    view, pos = memoryview(payload), len(_HEADER)
    while int.from_bytes(view[pos : pos + 2], "big", signed=True) != -1:
        pos += 2
        fields = []
        for _ in range(len(COLUMNS)):
            n = int.from_bytes(view[pos : pos + 4], "big")
            fields.append(bytes(view[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        _, stream, key, data, deleted, _, _ = fields
        yield stream.decode(), key.decode(), data[1:], deleted == b"\x01"


async def slices(data: bytes) -> AsyncIterator[memoryview]:
    """COPY data as asyncpg sends it: 256 KiB at a time, without copying it into pieces."""
    view = memoryview(data)
    for i in range(0, len(view), SLICE_BYTES):
        yield view[i : i + SLICE_BYTES]
