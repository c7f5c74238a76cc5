"""How a time is shown to a person, the same on every surface (the CLI, the report's text and
HTML, the web UI's details): `2026-12-04 17:09 UTC`, always with its date, since what is read
later (a report kept, a workflow's details written when it waited) must not say "17:09" of
another day. Machine formats (`--json`) keep ISO 8601 with its offset. Pure: workflows use it.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc(at: datetime) -> str:
    """`2026-12-04 17:09 UTC`; a naive time is taken as UTC already (as the store keeps them)."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return f"{at:%Y-%m-%d %H:%M} UTC"
