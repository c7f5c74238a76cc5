"""`main`: one collection of the `slack` connector, START to DONE."""

from __future__ import annotations

import asyncio

from pdpp_orch.connectors.sdk import Connector
from pdpp_orch.connectors.slack.archive import Archive, archive_path
from pdpp_orch.connectors.slack.dump import refresh, wanted_channels
from pdpp_orch.connectors.slack.emit import emit_inventory, emit_messages, report_failures


def main() -> None:
    """Run one collection: refresh the archive, emit it, report what the refresh missed, DONE."""
    conn = Connector()
    conn.start()
    if conn.recovery_only():  # no detail lanes: nothing to drain
        conn.done()
    archive = Archive(archive_path())
    try:
        dump = asyncio.run(refresh(conn, archive))
        for stream in ("users", "channels"):
            if conn.in_scope(stream):
                emit_inventory(conn, archive, stream)
        if conn.in_scope("messages"):
            emit_messages(conn, archive, wanted_channels(conn, archive.ids("channels")))
        error = report_failures(conn, dump)
    finally:
        archive.close()
    if error is not None:
        conn.done("failed", error=error)
    conn.done()
