"""`deployment [show]|set-current|ramp|rollback`: Worker Versioning — which build takes new
runs, and what each build still runs (docs/operations.md, "Upgrades")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion

from pdpp_orch.cli.common import DataDirOpt, JsonOpt, default_group, endpoints, err, out, run_async, settings
from pdpp_orch.control import deployment as control
from pdpp_orch.control.connect import connect
from pdpp_orch.control.deployment import Build, BuildStatus, Change, Deployment
from pdpp_orch.settings import Settings
from pdpp_orch.times import utc

app = typer.Typer(
    help="Worker Versioning: which build takes new runs, and what each build still runs.",
    cls=default_group("show"),
    no_args_is_help=False,
)

DeploymentOpt = Annotated[
    str | None,
    typer.Option(
        "--deployment",
        help="The Worker Deployment [env: PDPP_WORKER_DEPLOYMENT; default pdpp-orchestrator]",
    ),
]
BuildArg = Annotated[str, typer.Argument(help="A build id (the PDPP_WORKER_BUILD_ID of its workers).")]


def _settings(data_dir: DataDirOpt, deployment: str | None) -> Settings:
    s = settings(data_dir)
    if deployment is not None:
        s.worker_deployment = deployment
    return s


@app.command("show")
def show(deployment: DeploymentOpt = None, as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """The deployment's builds: which takes new runs, which are draining (runs still pinned to
    them) or drained (their workers may stop), and the runs each still has open."""
    run_async(_show(_settings(data_dir, deployment), as_json))


async def _show(s: Settings, as_json: bool) -> int:
    address, _ = endpoints(s)
    client = await connect(address, s.temporal_namespace)
    d = await control.describe(client, s.worker_deployment)
    if as_json:
        print(d.model_dump_json(indent=2))
    else:
        print_deployment(d)
    return 0


def _when(t: datetime | None) -> str:
    return utc(t) if t else ""


def routing_line(d: Deployment) -> str:
    """Where new runs go, in one line."""
    current = f"build {d.current}" if d.current else "unversioned workers (no build is current)"
    ramp = f"; {d.ramp_percentage:g}% to build {d.ramping} (ramping)" if d.ramping else ""
    return f"deployment {d.name}: new runs go to {current}{ramp}"


def print_deployment(d: Deployment) -> None:
    out.print(escape(routing_line(d)), highlight=False)
    t = Table("build", "status", "open runs", "recoveries", "budgets", "created", "last made current")
    for b in d.builds:
        status = f"{b.status.value} {d.ramp_percentage:g}%" if b.status is BuildStatus.RAMPING else b.status
        t.add_row(
            escape(b.build_id),
            status,
            *(f"{b.open.get(kind, 0):,}" for kind in control.WORKFLOW_TYPES),
            _when(b.created_at),
            _when(b.last_current_at),
        )
    out.print(t)
    for b in d.builds:
        line = _advice(b)
        if line:
            out.print(escape(line), highlight=False)
    if any(sum(b.open.values()) - b.open.get(control.RUNS, 0) for b in d.builds if b.build_id != d.current):
        out.print("(recoveries and budgets move to the current build at their next step)", highlight=False)


def _advice(b: Build) -> str:
    """What an operator does about a build that no longer takes new runs."""
    runs = b.open.get(control.RUNS, 0)
    if b.status is BuildStatus.DRAINING or (b.status is BuildStatus.DRAINED and runs):
        listed = ", ".join(b.runs) + (" …" if runs > len(b.runs) else "")
        return (
            f"build {b.build_id} is draining: {runs:,} run(s) pinned to it still open ({listed}); "
            "keep its workers until it is drained"
            if runs
            else f"build {b.build_id} is draining: Temporal has not yet seen its last pinned run close"
        )
    if b.status is BuildStatus.DRAINED:
        return (
            f"build {b.build_id} is drained: no run is pinned to it; its workers may stop "
            f"(keep them while you may still roll back to it)"
        )
    if b.status is BuildStatus.INACTIVE:
        return (
            f"build {b.build_id} takes no new runs yet: "
            f"`pdpp-orch deployment set-current {b.build_id}` (or `ramp {b.build_id} PERCENT`)"
        )
    return ""


def _print_change(s: Settings, c: Change, as_json: bool) -> None:
    if as_json:
        print(c.model_dump_json())
        return
    now = Deployment(
        name=s.worker_deployment, current=c.current, ramping=c.ramping, ramp_percentage=c.ramp_percentage
    )
    before = f"build {c.previous_current}" if c.previous_current else "unversioned workers"
    if c.previous_ramping:
        before += f", build {c.previous_ramping} ramping"
    out.print(escape(f"{routing_line(now)} (before: {before})"), highlight=False)
    if c.current is None and c.previous_current:
        err.print(
            "unversioned workers (started without PDPP_WORKER_BUILD_ID) must be polling: "
            "until one does, new runs wait.",
            highlight=False,
        )
    err.print(
        "runs already started finish on the build they are pinned to; recoveries and budgets "
        "move at their next step. `pdpp-orch deployment` shows what each build still runs.",
        highlight=False,
    )


@app.command("set-current")
def set_current(
    build: BuildArg, deployment: DeploymentOpt = None, as_json: JsonOpt = False, data_dir: DataDirOpt = None
) -> None:
    """Make BUILD current: every new run, and every recovery and budget at its next step, goes
    to it (its workers must be polling). Runs started on other builds finish there."""
    s = _settings(data_dir, deployment)
    run_async(_change(s, as_json, lambda c: control.set_current(c, s.worker_deployment, build)))


@app.command("ramp")
def ramp(
    build: BuildArg,
    percentage: Annotated[float, typer.Argument(help="Share of new runs for BUILD, 0 to 100.")],
    deployment: DeploymentOpt = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Send PERCENTAGE of new runs (and of recoveries and budgets, chosen by workflow id) to
    BUILD and the rest to the current build. `rollback` ends the ramp; `set-current` completes it."""
    s = _settings(data_dir, deployment)
    run_async(_change(s, as_json, lambda c: control.ramp(c, s.worker_deployment, build, percentage)))


@app.command("rollback")
def rollback(
    build: Annotated[
        str | None, typer.Argument(help="The build to make current (default: the previous current one).")
    ] = None,
    deployment: DeploymentOpt = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Undo the last rollout step: end a ramp in progress, or make the previously current build
    (or BUILD) current again — the unversioned workers, when no other build ever was. Its
    workers must still be polling."""
    s = _settings(data_dir, deployment)
    run_async(_change(s, as_json, lambda c: control.rollback(c, s.worker_deployment, build)))


async def _change(s: Settings, as_json: bool, act: control.Act) -> int:
    address, _ = endpoints(s)
    client = await connect(address, s.temporal_namespace)
    _print_change(s, await act(client), as_json)
    return 0


async def tell_joined(client: Client, version: WorkerDeploymentVersion) -> None:
    """Once a versioned worker's build is in its deployment, say whether it takes new runs."""
    d = await control.joined(client, version, wait_s=30)
    build, name = version.build_id, version.deployment_name
    if d is None:
        err.print(f"[yellow]build {escape(build)} has not appeared in deployment {escape(name)} yet[/yellow]")
        return
    if d.current == build:
        line = f"build {build} is current in deployment {name}: it takes new runs"
    elif d.ramping == build:
        line = f"build {build} is ramping in deployment {name}: it takes {d.ramp_percentage:g}% of new runs"
    else:
        where = f"build {d.current}" if d.current else "unversioned workers"
        line = (
            f"build {build} joined deployment {name} but takes no new runs (they go to {where}): "
            f"`pdpp-orch deployment set-current {build}` (or `ramp {build} PERCENT`)"
        )
    err.print(escape(line), highlight=False)
