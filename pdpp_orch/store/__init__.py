"""The record store and run ledger on PostgreSQL (asyncpg). All SQL of the project lives in
this package, one module per aggregate; `Store` holds one of each over a shared pool:

- `records`: the flush (records.py, with batch.py and the COPY codec in copydata.py)
- `export`: the stored records read back, streamed (export.py)
- `logs`: the connector's stderr per attempt and a run's timeline of events (logs.py)
- `runs`: the run ledger, spine events, quarantined lines (runs.py)
- `state`: committed cursors and resume points (state.py)
- `gaps`, `hints`, `leases`: the gap ledger, as misses, as retry hints, as leases (gaps.py,
  hints.py, leases.py)
- `interactions`, `assistance`, `locks`, `reports` (interactions.py, assistance.py, locks.py,
  reports.py)
- `erasure`: the owner's right to erase a connector's, stream's or key's data (erasure.py)
- `present`, `recoveries`: what the read model of the present reads, and how recoveries ended
  (present.py, recoveries.py)

Writes are set-based: a flush is one transaction of COPY (into `records`, or a staging table
and one upsert), the ledger rows and the checkpoint the flushed records prove (DESIGN §2, §6).
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Any

import asyncpg

from pdpp_orch.store import schema
from pdpp_orch.store.assistance import Assistance, AssistanceStore
from pdpp_orch.store.batch import (
    CheckpointWrite,
    ContinuationRow,
    Flush,
    FlushResult,
    QuarantineRow,
    RefusedRecord,
)
from pdpp_orch.store.erasure import Busy, ErasureStore, Remains, Scope
from pdpp_orch.store.export import RecordExport, RecordQuery, StoredRecord
from pdpp_orch.store.gaps import Gap, GapStore, NewGap
from pdpp_orch.store.hints import HintGaps, HintStore
from pdpp_orch.store.interactions import Interaction, InteractionStore
from pdpp_orch.store.leases import LeaseStore, ServedGap
from pdpp_orch.store.locks import LockStore
from pdpp_orch.store.logs import LogEntry, LogStore
from pdpp_orch.store.present import PresentStore
from pdpp_orch.store.records import RecordStore, StaleAttemptError
from pdpp_orch.store.recoveries import RecoveryStore
from pdpp_orch.store.reports import ReportRows, ReportStore
from pdpp_orch.store.runs import Diagnostics, QuarantinedLine, RunRow, RunStore, SpineEvent
from pdpp_orch.store.schema import SCHEMA_VERSION, SchemaError
from pdpp_orch.store.state import StateStore

__all__ = [
    "SCHEMA_VERSION",
    "Assistance",
    "Busy",
    "CheckpointWrite",
    "ContinuationRow",
    "Diagnostics",
    "Flush",
    "FlushResult",
    "Gap",
    "HintGaps",
    "Interaction",
    "LogEntry",
    "NewGap",
    "QuarantineRow",
    "QuarantinedLine",
    "RecordQuery",
    "RefusedRecord",
    "Remains",
    "ReportRows",
    "RunRow",
    "SchemaError",
    "Scope",
    "ServedGap",
    "SpineEvent",
    "StaleAttemptError",
    "Store",
    "StoredRecord",
    "ping",
]

SOCKET_BUFFER_BYTES = 8 << 20
# A worker that vanishes without closing its connections (its host lost power, its network was
# cut) leaves its transaction open on the server, holding the row locks of the batch it was
# writing: the collect attempt that takes over blocks on them until PostgreSQL notices the peer
# is gone — two hours (keepalive) or about fifteen minutes (retransmissions of a reply the dead
# peer never acknowledged) by the kernel's defaults; seen across hosts, tests/hosts/. With these
# on the server's end of every connection it notices in 10 + 3 × 5 s when the connection is
# idle, 30 s when a reply goes unacknowledged, rolls the dead transaction back, and the
# successor goes on. (Unix sockets ignore them.)
SERVER_TCP = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "30000",
}


async def _connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """A connection whose socket buffers a whole batch: a COPY then streams into PostgreSQL
    while the collector parses the next batch, instead of a socketful at a time between the
    collector's lines."""
    conn: asyncpg.Connection = await asyncpg.connect(*args, **kwargs)
    transport = getattr(conn, "_transport", None)  # asyncpg keeps its socket private
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):  # the kernel caps it at net.core.wmem_max
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
    return conn


def _apply_schema_default() -> bool:
    return os.environ.get("PDPP_APPLY_SCHEMA", "1").strip().lower() not in ("0", "false", "no")


class Store:
    """Typed access to the record store; construct with `Store.connect(dsn)`."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool
        self.records = RecordStore(pool)
        self.export = RecordExport(pool)
        self.logs = LogStore(pool)
        self.runs = RunStore(pool)
        self.state = StateStore(pool)
        self.gaps = GapStore(pool)
        self.hints = HintStore(pool)
        self.leases = LeaseStore(pool)
        self.interactions = InteractionStore(pool)
        self.assistance = AssistanceStore(pool)
        self.locks = LockStore(pool)
        self.reports = ReportStore(pool)
        self.erasure = ErasureStore(pool)
        self.present = PresentStore(pool)
        self.recoveries = RecoveryStore(pool)

    @classmethod
    async def connect(
        cls, dsn: str, *, min_size: int = 1, max_size: int = 10, apply_schema: bool | None = None
    ) -> Store:
        """A pool on `dsn`, with the schema applied, or (`apply_schema` False; default: the
        environment's PDPP_APPLY_SCHEMA, on unless `0`) only checked to be the version this
        code needs, for a least-privilege role that cannot run DDL."""
        if apply_schema is None:
            apply_schema = _apply_schema_default()
        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, connect=_connect, server_settings=SERVER_TCP
        )
        try:
            await (schema.apply(pool) if apply_schema else schema.check(pool))
        except BaseException:
            await pool.close()
            raise
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()


async def ping(dsn: str, wait_s: float) -> None:
    """Raise unless PostgreSQL at `dsn` answers a query within `wait_s` seconds."""
    conn = await asyncpg.connect(dsn, timeout=wait_s)
    try:
        await conn.fetchval("SELECT 1", timeout=wait_s)
    finally:
        await conn.close()
