"""DESIGN §11 across hosts: the invariant of tests/faults/test_invariant.py, plus the fencing
that keeps a cut-off host's attempt from writing once its successor began.

The project fences by attempt: every collect attempt first raises `runs.attempt` to its own
number (`begin_attempt`), and every flush ends with `UPDATE runs ... WHERE attempt <= mine` in
the flush's transaction, so a flush of a superseded attempt updates nothing and rolls back
whole. `audit()` installs triggers (in this test's own database) that log, in commit order of
the `runs` row, every attempt's beginning and every fenced flush, and every transaction that
wrote `records`; `late_writes()` finds a flush of attempt k after an attempt > k began, or a
write to `records` that did not pass the fence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from temporalio.client import WorkflowHandle

from pdpp_orch.models import RunOutcome, RunStatus
from pdpp_orch.store import Store
from pdpp_orch.store.runs import TERMINAL_EVENTS
from tests.faults.test_faults import committed, resume_points
from tests.faults.test_invariant import stream_rows
from tests.helpers import assert_temporal_agrees

_AUDIT = """
CREATE TABLE IF NOT EXISTS hosts_audit (
    id bigserial PRIMARY KEY, run_id text, attempt int, kind text,
    at timestamptz NOT NULL DEFAULT clock_timestamp(), txid bigint NOT NULL DEFAULT txid_current()
);
CREATE TABLE IF NOT EXISTS hosts_audit_tx (txid bigint PRIMARY KEY);
CREATE OR REPLACE FUNCTION hosts_audit_runs() RETURNS trigger AS $$
BEGIN
    IF NEW.attempt IS DISTINCT FROM OLD.attempt THEN
        INSERT INTO hosts_audit (run_id, attempt, kind) VALUES (NEW.run_id, NEW.attempt, 'begin');
    END IF;
    IF NEW.progress IS DISTINCT FROM OLD.progress THEN
        INSERT INTO hosts_audit (run_id, attempt, kind) VALUES (NEW.run_id, NEW.attempt, 'flush');
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION hosts_audit_records() RETURNS trigger AS $$
BEGIN
    INSERT INTO hosts_audit_tx VALUES (txid_current()) ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE OR REPLACE TRIGGER hosts_audit_runs AFTER UPDATE ON runs
    FOR EACH ROW EXECUTE FUNCTION hosts_audit_runs();
CREATE OR REPLACE TRIGGER hosts_audit_records AFTER INSERT OR UPDATE ON records
    FOR EACH STATEMENT EXECUTE FUNCTION hosts_audit_records();
"""

_LATE = """
SELECT f.run_id, f.attempt, f.at, b.attempt AS successor, b.at AS successor_began
FROM hosts_audit f
JOIN hosts_audit b ON b.run_id = f.run_id AND b.kind = 'begin' AND b.attempt > f.attempt AND b.id < f.id
WHERE f.kind = 'flush' AND f.run_id = ANY($1::text[])
"""

_UNFENCED = """
SELECT count(*) FROM hosts_audit_tx t
WHERE NOT EXISTS (SELECT 1 FROM hosts_audit a WHERE a.txid = t.txid AND a.kind = 'flush')
"""


async def audit(store: Store) -> None:
    await store.pool.execute(_AUDIT)


async def late_writes(store: Store, run_ids: list[str]) -> list[dict[str, Any]]:
    """Flushes that committed after a newer attempt of their run had begun, and transactions
    that wrote `records` without passing the fence (as a count)."""
    late = [dict(r) for r in await store.pool.fetch(_LATE, run_ids)]
    unfenced = int(await store.pool.fetchval(_UNFENCED))
    return late + ([{"unfenced_transactions": unfenced}] if unfenced else [])


async def takeover(store: Store, run_id: str, since: datetime) -> tuple[float, float]:
    """Seconds from `since` until the attempt that took over began, and until it first wrote."""
    began = await store.pool.fetchval(
        "SELECT min(at) FROM hosts_audit WHERE run_id = $1 AND kind = 'begin' AND at > $2", run_id, since
    )
    wrote = await store.pool.fetchval(
        "SELECT min(at) FROM hosts_audit WHERE run_id = $1 AND kind = 'flush' AND at > $2 AND attempt > 1",
        run_id,
        since,
    )
    assert began is not None and wrote is not None, (run_id, "no attempt took over")
    return (began - since).total_seconds(), (wrote - since).total_seconds()


@dataclass
class Seen:
    """What one run came to, for the test's figures."""

    status: str
    durable: int
    rows: dict[str, int]
    committed: dict[str, int]
    attempts: int


async def check_run(
    store: Store, handle: WorkflowHandle[Any, Any], name: str, o: RunOutcome, dataset: dict[str, int]
) -> Seen:
    """One true outcome, recorded; every accepted record durable exactly once; no write from a
    superseded attempt; the lock released."""
    where = handle.id
    row = await store.runs.get(handle.id)
    assert row is not None and row.finished_at is not None, (where, "no outcome recorded", row)
    assert row.outcome is not None and row.status is o.status, where
    assert row.records_durable == o.records_durable, where
    spine = [e.event_type for e in await store.runs.spine_events(handle.id)]
    terminal = [e for e in spine if e.startswith("run.") and e != "run.started"]
    assert terminal == [TERMINAL_EVENTS[o.status]], (where, spine)

    desc = await handle.describe()
    assert_temporal_agrees(desc, o, where)

    per_stream = await stream_rows(store, name)
    rows = {st: n for st, (n, _, _) in per_stream.items()}
    for st, (n, keys, top) in per_stream.items():
        assert n == keys == top, (where, st, "rows, keys and the dataset's prefix differ", n, keys, top)
    assert o.records_durable == sum(rows.values()), (where, o.records_durable, rows)
    assert (o.records_rejected, o.buffered_records_dropped) == (0, 0), where
    done = await committed(store, name)
    assert done == await resume_points(store, handle.id), (where, "proven checkpoints not committed")
    for st, offset in done.items():
        assert offset <= rows.get(st, 0), (where, st, "committed cursor ahead of the rows")
    if o.status is RunStatus.SUCCEEDED:
        assert rows == dataset and done == dataset, (where, rows, done)

    assert await late_writes(store, [handle.id]) == [], (where, "a superseded attempt wrote")
    holder = await store.pool.fetchval("SELECT run_id FROM connector_locks WHERE connector = $1", name)
    assert holder is None, (where, "the connector's lock is held", holder)
    attempts = int(await store.pool.fetchval("SELECT attempt FROM runs WHERE run_id = $1", handle.id))
    return Seen(o.status.value, o.records_durable, rows, done, attempts)
