"""`records NAME`: the records a connector's runs stored, read back without SQL, streamed: a
table for people, JSON, JSON lines or CSV for programs (`> file`, `| jq`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import typer
from rich.markup import escape

from pdpp_orch.cli.common import ConnectorsOpt, DataDirOpt, database, err, out, run_async, settings
from pdpp_orch.cli.complete import connector_names
from pdpp_orch.cli.inert import ByteSink, terminal_bytes
from pdpp_orch.control import UsageError
from pdpp_orch.control.stack import command_store, known_connector, registry
from pdpp_orch.settings import Settings
from pdpp_orch.store import RecordQuery, Store, StoredRecord
from pdpp_orch.times import utc

TABLE_ROWS = 50
EXCERPT = 100
# The table's columns, named once above its first row (rows stream as they come, unaligned).
HEADER = "[bold]stream  key  when  data (or deleted)[/bold]"


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"


def records(
    name: Annotated[str, typer.Argument(help="Connector name.", autocompletion=connector_names)],
    stream: Annotated[str | None, typer.Option("--stream", help="Only this stream.")] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only records written (or deleted) at or after this ISO time."),
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="Only the record of this key.")] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", min=1, help=f"At most this many [default: {TABLE_ROWS} in a table, else all]"
        ),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="How to print them.")] = Format.TABLE,
    connectors: ConnectorsOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The records connector NAME's runs stored, by stream and key: each record's latest
    version, when it was written and by which run; a deleted record (`op: delete`) as its key,
    `deleted` and when.

    Streamed from PostgreSQL in constant memory whatever the size (COPY for json, jsonl and
    csv, a server-side cursor for the table): `--format jsonl > items.jsonl` exports a million
    records in seconds. In JSON each record is `{stream, key, deleted, updated_at, run_id,
    data}`, a deleted one `{stream, key, deleted: true, deleted_at, run_id}`; csv has the same
    columns, `data` as JSON text. Needs PostgreSQL only (PDPP_DATABASE_URL, else the dev
    stack's), no Temporal."""
    at_most = limit or (TABLE_ROWS if fmt is Format.TABLE else None)
    query = RecordQuery(name, stream, None, key, at_most)
    run_async(_records(settings(data_dir, connectors), query, since, fmt))


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as e:
        raise UsageError(
            f"--since {text!r} is not an ISO time (e.g. 2026-01-31 or 2026-01-31T12:00:00Z)"
        ) from e
    return when if when.tzinfo else when.replace(tzinfo=UTC)


async def _records(s: Settings, q: RecordQuery, since: str | None, fmt: Format) -> int:
    default_limit = fmt is Format.TABLE and q.limit == TABLE_ROWS
    q = replace(q, since=_since(since))
    async with command_store(database(s)) as store:
        await known_connector(store, q.connector, lambda: registry(s))
        try:
            shown = await _write(store, q, fmt)
        except BrokenPipeError:  # `| head`: the reader has what it wanted
            return 0
        if shown == 0:
            await _say_none(store, q)
        elif default_limit and shown == q.limit:
            err.print(f"(the first {shown}: --limit N for more, --format jsonl for all)", highlight=False)
    return 0


async def _write(store: Store, q: RecordQuery, fmt: Format) -> int:
    """Print the records as they come; returns how many lines of records were printed."""
    stdout = terminal_bytes()
    lines = 0

    async def write(chunk: bytes) -> None:
        nonlocal lines
        lines += chunk.count(b"\n")
        stdout.write(chunk)

    if fmt is Format.JSONL:
        await store.export.json_lines(q, write)
    elif fmt is Format.CSV:
        await store.export.csv(q, write)
        lines = max(0, lines - 1)  # its header
    elif fmt is Format.JSON:
        array = JsonArray(stdout)
        await store.export.json_lines(q, array.write)
        lines = array.finish()
    else:
        async for r in store.export.rows(q):
            if not lines:
                out.print(HEADER, highlight=False, soft_wrap=True)
            out.print(_row(r), highlight=False, soft_wrap=True)
            lines += 1
    stdout.flush()
    return lines


def _row(r: StoredRecord) -> str:
    when = utc(datetime.fromisoformat(r.updated_at))
    if r.deleted:
        what = "[red]deleted[/red]"
    else:
        data = r.data or ""
        what = escape(data if len(data) <= EXCERPT else data[: EXCERPT - 1] + "…")
    return f"{escape(r.stream)}  {escape(r.key)}  {when}  {what}"


async def _say_none(store: Store, q: RecordQuery) -> None:
    held = await store.export.streams(q.connector)
    if not held:
        err.print(
            f"no records of {q.connector!r} (`pdpp-orch runs --connector {q.connector}`)", highlight=False
        )
    else:
        streams = ", ".join(f"{s} ({n:,})" for s, n in held.items())
        err.print(f"no record matches; {q.connector} holds {streams}", highlight=False)


class JsonArray:
    """JSON lines written as one JSON array, chunk by chunk: each line's newline becomes
    `,\\n` but the last one's."""

    def __init__(self, stdout: ByteSink) -> None:
        self.stdout = stdout
        self.pending = b""
        self.lines = 0

    async def write(self, chunk: bytes) -> None:
        if not self.lines and not self.pending:
            self.stdout.write(b"[\n")
        self.lines += chunk.count(b"\n")
        text = self.pending + chunk.replace(b"\n", b",\n")
        # The last separator waits: only the next chunk says whether it was the last line's.
        self.pending = b",\n" if text.endswith(b",\n") else b""
        self.stdout.write(text[: len(text) - len(self.pending)])

    def finish(self) -> int:
        self.stdout.write(b"\n]\n" if self.lines else b"[]\n")
        return self.lines
