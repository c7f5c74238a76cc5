"""How recoveries ended, as they record it themselves: a `recovery.ended` spine event under the
recovery's workflow id (every gap settled, gave up, or cancelled — by whom, from the cancel's
reason — with where its gaps stood). The present reads the latest one of each recovery, so what
it says does not depend on Temporal's retention."""

from __future__ import annotations

import asyncpg
import orjson

from pdpp_orch.models import RecoveryEnd
from pdpp_orch.store.common import INSERT_SPINE

ENDED = "recovery.ended"


class RecoveryStore:
    """The spine events of recoveries."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def record_end(self, end: RecoveryEnd) -> None:
        """Record how a recovery ended (a retried activity records the same end again: the
        latest one is read)."""
        await self.pool.execute(INSERT_SPINE, end.workflow_id, end.connector, ENDED, end.model_dump_json())

    async def ends(self, connector: str, workflow_ids: list[str]) -> dict[str, RecoveryEnd]:
        """The latest recorded end of each of these recoveries."""
        rows = await self.pool.fetch(
            "SELECT DISTINCT ON (run_id) run_id, payload::text AS payload FROM spine_events "
            "WHERE connector = $1 AND event_type = $2 AND run_id = ANY($3::text[]) ORDER BY run_id, id DESC",
            connector,
            ENDED,
            workflow_ids,
        )
        return {r["run_id"]: RecoveryEnd.model_validate(orjson.loads(r["payload"])) for r in rows}
