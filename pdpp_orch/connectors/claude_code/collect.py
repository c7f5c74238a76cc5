"""`main`: one collection of the `claude_code` connector, START to DONE."""

from __future__ import annotations

from collections.abc import Iterator

from pdpp_orch.connectors.claude_code.files import root_dir
from pdpp_orch.connectors.claude_code.reader import ALL_STREAMS, Reader
from pdpp_orch.connectors.sdk import Connector


def _iter_scope(conn: Connector) -> Iterator[str]:
    names = conn.streams()
    yield from (s for s in ALL_STREAMS if s in names) if names else ALL_STREAMS


def main() -> None:
    """Run one collection: read START, emit records and one STATE per in-scope stream, DONE."""
    conn = Connector()
    start = conn.start()
    if start.get("recovery_only"):
        conn.done()  # no detail gaps are ever opened, so there is nothing to drain
    root = root_dir()
    if not root.is_dir():
        # Zero records from a missing directory would read as "nothing new"; it is a setup problem.
        conn.done(
            "failed",
            error={
                "message": f"Claude Code projects directory {root} does not exist (set CLAUDE_CODE_ROOT)",
                "retryable": False,
                "code": "source_root_missing",
                "recovery_hint": "manual_action_required",
            },
        )
    incremental = start.get("collection_mode") != "full_refresh"
    Reader(conn, root, set(_iter_scope(conn)), incremental).run()
    conn.done()
