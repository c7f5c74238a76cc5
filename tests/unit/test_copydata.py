"""The binary COPY data of a batch's rows (pdpp_orch/store/copydata.py), read back."""

from __future__ import annotations

import struct

import msgspec

from pdpp_orch.store import copydata


def read_back(pieces: list[bytearray]) -> list[tuple[bytes, ...]]:
    data = b"".join(pieces)
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00" + bytes(8)) and data.endswith(b"\xff\xff")
    pos, rows = 19, []
    while True:
        (count,) = struct.unpack_from(">h", data, pos)
        pos += 2
        if count == -1:
            assert pos == len(data)
            return rows
        assert count == len(copydata.COLUMNS)
        fields = []
        for _ in range(count):
            (n,) = struct.unpack_from(">i", data, pos)
            fields.append(data[pos + 4 : pos + 4 + n])
            pos += 4 + n
        rows.append(tuple(fields))


def test_rows_come_back_field_for_field_in_slices() -> None:
    long_key = "k" * 300
    big = b'{"id": "big", "text": "' + b"x" * 70_000 + b'"}'
    raw = msgspec.json.decode(b'{"d": {"id": "raw"}}', type=dict[str, msgspec.Raw])["d"]
    rows: dict[tuple[str, str], copydata.Row] = {
        ("a", "k1"): (b'{"id": "k1"}', copydata.UPSERT, 1, b""),
        ("a", long_key): (b'{"id": "long"}', copydata.TOMBSTONE, 2, b""),
        ("b", "big"): (big, copydata.UPSERT, 3, b""),
        ("b", "raw"): (raw, copydata.UPSERT, 4, b""),
        ("b", "é"): (copydata.TOMBSTONE_DATA, copydata.TOMBSTONE, 5, b""),
        **{("c", f"n{i}"): (b'{"n": %d}' % i, copydata.UPSERT, 6 + i, b"") for i in range(5000)},
    }
    pieces = list(copydata.encode("conn", "run-1", rows.items()))
    assert len(pieces) > 1 and all(len(p) < copydata.SLICE_BYTES + 80_000 for p in pieces)
    back = read_back(pieces)
    assert len(back) == len(rows)
    for ((stream, key), (data, state, _, _)), got in zip(rows.items(), back, strict=True):
        deleted = b"\x01" if state == copydata.TOMBSTONE else b"\x00"
        assert got == (
            b"conn",
            stream.encode(),
            key.encode(),
            b"\x01" + bytes(data),
            deleted,
            b"run-1",
            b"run-1",
        )
