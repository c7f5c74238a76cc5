"""`schedule create|update|list|describe|pause|unpause|trigger|delete`: recurring syncs on
Temporal Schedules (one per connector, id sync-NAME)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from pdpp_orch.cli.common import ConnectorsOpt, DataDirOpt, JsonOpt, endpoints, err, out, run_async, settings
from pdpp_orch.cli.complete import connector_names, scheduled_connectors
from pdpp_orch.control import UsageError
from pdpp_orch.control import schedules as control
from pdpp_orch.control.connect import connect
from pdpp_orch.control.resolve import refuse_unknown
from pdpp_orch.control.runs import new_run
from pdpp_orch.registry import Registry
from pdpp_orch.settings import Settings
from pdpp_orch.times import utc
from workflows.ids import schedule_id

app = typer.Typer(
    help="Recurring syncs on Temporal Schedules (one per connector, id sync-NAME).", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(help="Connector name.", autocompletion=scheduled_connectors)]
EveryOpt = Annotated[str | None, typer.Option("--every", help='Interval, e.g. "6h", "30m", "1d".')]
CronOpt = Annotated[str | None, typer.Option("--cron", help='Cron expression, e.g. "0 */6 * * *".')]
OverlapOpt = Annotated[
    str | None,
    typer.Option(
        "--overlap", help="When the previous run is still going: skip (default), buffer_one, allow_all."
    ),
]


def _check_overlap(overlap: str | None) -> None:
    if overlap is not None and overlap not in control.OVERLAP:
        raise typer.BadParameter(f"--overlap must be one of {', '.join(control.OVERLAP)}")


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Connector name.", autocompletion=connector_names)],
    every: EveryOpt = None,
    cron: CronOpt = None,
    stream: Annotated[
        list[str] | None, typer.Option("--stream", help="Only this stream (repeatable).")
    ] = None,
    overlap: OverlapOpt = None,
    jitter: Annotated[str | None, typer.Option(help='Random delay up to this, e.g. "5m".')] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    connectors: ConnectorsOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Sync connector NAME on a schedule; its runs carry trigger `scheduled`."""
    _check_overlap(overlap)
    s = settings(data_dir, connectors)
    run_async(_create(s, name, every, cron, stream or [], overlap or "skip", jitter, paused))


async def _create(
    s: Settings,
    name: str,
    every: str | None,
    cron: str | None,
    streams: list[str],
    overlap: str,
    jitter: str | None,
    paused: bool,
) -> int:
    registry = Registry.load(s.connectors)
    new_run(registry, name, streams)  # validates the connector and its streams
    try:
        spec = control.spec(every, cron, jitter)
    except ValueError as e:
        raise UsageError(str(e)) from e
    address, _ = endpoints(s)
    client = await connect(address, s.temporal_namespace)
    note = await refuse_unknown(client, s.task_queue, registry, name, streams)
    if note:
        err.print(f"note: {note}", highlight=False)
    schedule = control.build(
        name, s.task_queue, spec, streams, overlap, paused, s.heartbeat_timeout_seconds, registry.describe()
    )
    sid = await control.create(client, name, schedule)
    out.print(f"schedule {sid} created" + (" (paused)" if paused else ""))
    return 0


@app.command("update")
def update(
    name: NameArg,
    every: EveryOpt = None,
    cron: CronOpt = None,
    jitter: Annotated[str | None, typer.Option(help="New jitter (with --every or --cron).")] = None,
    overlap: OverlapOpt = None,
    rekey: Annotated[
        bool,
        typer.Option(
            "--rekey",
            help="Only encrypt the schedule's stored run input again, under the first key of "
            "the keyring (after a key rotation); every update does this too.",
        ),
    ] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Change a schedule's timing (--every or --cron) or overlap policy, or re-encrypt its
    stored run input under the first key (--rekey)."""
    _check_overlap(overlap)
    run_async(_update(settings(data_dir), name, every, cron, jitter, overlap, rekey))


async def _update(
    s: Settings,
    name: str,
    every: str | None,
    cron: str | None,
    jitter: str | None,
    overlap: str | None,
    rekey: bool,
) -> int:
    try:
        spec = control.spec(every, cron, jitter) if every or cron else None
    except ValueError as e:
        raise UsageError(str(e)) from e
    if spec is None and overlap is None and not rekey:
        raise UsageError("nothing to change: give --every, --cron, --overlap or --rekey")
    address, _ = endpoints(s)
    client = await connect(address, s.temporal_namespace)
    try:
        await control.call(control.update(client, name, spec, overlap), name)
    except ValueError as e:  # the codec: its input is under a key this keyring lacks
        raise UsageError(
            f"the schedule's stored run input cannot be decrypted: {e}; keep the old key in the "
            "keyring (after the new one) until every schedule is updated"
        ) from e
    out.print(f"schedule {schedule_id(name)} updated")
    return 0


@app.command("list")
def list_(as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """Every schedule: timing, overlap policy, paused, next run, runs and skipped overlaps."""
    run_async(_list(settings(data_dir), None, as_json))


@app.command("describe")
def describe(name: NameArg, as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """One connector's schedule."""
    run_async(_list(settings(data_dir), name, as_json))


async def _list(s: Settings, name: str | None, as_json: bool) -> int:
    address, _ = endpoints(s)
    client = await connect(address, s.temporal_namespace)
    rows = await control.describe(client, name)
    if as_json:
        print(json.dumps(rows if name is None else rows[0], indent=2, default=str))
        return 0
    t = Table(
        "schedule", "every / cron", "overlap", "paused", "next run", "runs", "skipped (overlap)", "running"
    )
    for r in rows:
        t.add_row(
            r["schedule_id"],
            r["every"] or r["cron"] or "",
            r["overlap"],
            "yes" if r["paused"] else "",
            utc(datetime.fromisoformat(r["next_run"])) if r["next_run"] else "",
            str(r["runs"]),
            str(r["skipped_overlaps"]),
            ", ".join(r["running"]),
        )
    out.print(t if rows else "no schedules")
    return 0


def _action(action: str) -> Callable[..., None]:
    def command(name: NameArg, data_dir: DataDirOpt = None) -> None:
        run_async(_act(settings(data_dir), name, action))

    command.__doc__ = control.ACTIONS[action]
    return command


async def _act(s: Settings, name: str, action: str) -> int:
    address, _ = endpoints(s)
    client = await connect(address, s.temporal_namespace)
    await control.act(client, name, action)
    done = {"pause": "paused", "unpause": "unpaused", "trigger": "triggered", "delete": "deleted"}[action]
    out.print(f"schedule {schedule_id(name)}: {done}")
    return 0


for _name in control.ACTIONS:
    app.command(_name)(_action(_name))
