"""What every aggregate of the store shares: how enums are written into SQL, affected-row
counts, and the spine event insert."""

from __future__ import annotations

from enum import StrEnum

from pdpp_orch import policy
from pdpp_orch.models import GapStatus

INSERT_SPINE = """
INSERT INTO spine_events (run_id, connector, event_type, payload) VALUES ($1, $2, $3, $4::jsonb)
"""


def sql_in(*values: StrEnum) -> str:
    """`'a', 'b'` for `x IN (...)`: the enums are the one spelling of a status, also in SQL."""
    return ", ".join(f"'{v.value}'" for v in values)


OPEN = sql_in(GapStatus.PENDING, GapStatus.LEASED)
SETTLED = sql_in(GapStatus.RECOVERED, GapStatus.TERMINAL)
# The recovery classes the runtime retries, as a parameter for `recovery_class = ANY($n)`.
RETRYABLE = sorted(c.value for c in policy.RETRYABLE_CLASSES)


def affected(command_tag: str) -> int:
    """Rows an UPDATE/DELETE touched, from asyncpg's command tag (`UPDATE 3`)."""
    return int(command_tag.split()[-1])
