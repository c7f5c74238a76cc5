"""`slack`: a workspace through an on-disk archive, in the role of slackdump — seed Case C.

Streams `users`, `channels` (full inventories, key `id`) and `messages` (key `[channel, ts]`,
`channel` added to each message; cursor `{"channels": {channel_id: latest_ts}}`).

Two phases, like the original connector around slackdump:

1. Dump: refresh a SQLite archive from the API — users, channels, then each selected channel's
   history from the newest ts already archived (`oldest`), so a second run refreshes instead of
   re-dumping. A channel's new messages and its watermark are written in one transaction only
   once its whole history came back, so the archive always holds a complete prefix of every
   channel. 5xx answers are retried (3 attempts, ~0.15 s of back-off); a channel that still
   fails is recorded and the dump CONTINUES with the other channels.
2. Emit: everything the archive holds for the in-scope streams (messages newer than the cursor,
   of the channels selected by `resources` / `exclude_resources`), one STATE per stream.

In the incident slackdump exited 6 on channel C017NG64T24 after a 5-hour dump and the connector
emitted nothing; the workaround was an environment variable to skip the refresh. Here there is
no escape hatch and nothing is lost: the archive is emitted, the failed channels are named in a
SKIP_RESULT (`upstream_server_error`, `retry_by_runtime`, `retry_after_seconds` =
$SLACK_RETRY_DELAY_SECONDS, default 600), and DONE is `failed` with the certified stream-scoped
code `stream_collection_failed` (exit 1, as slackdump's non-zero exit). A later run that excludes
(or only includes) those channels completes on its own.

Archive: $SLACK_ARCHIVE, else `<user cache dir>/pdpp-orch/slack/archive.sqlite`.

Modules: `archive` (the SQLite archive), `dump` (phase 1), `emit` (phase 2 and the failure
report), `collect` (`main`).
"""

from __future__ import annotations

from pdpp_orch.connectors.slack.archive import Archive, archive_path
from pdpp_orch.connectors.slack.collect import main
from pdpp_orch.connectors.slack.dump import Dump, dump_workspace, fetch_pages, wanted_channels
from pdpp_orch.connectors.slack.emit import emit_inventory, emit_messages, report_failures, retry_delay

__all__ = [
    "Archive",
    "Dump",
    "archive_path",
    "dump_workspace",
    "emit_inventory",
    "emit_messages",
    "fetch_pages",
    "main",
    "report_failures",
    "retry_delay",
    "wanted_channels",
]
