"""`pdpp-orch`: the operator's command line. One module per command group; each command parses
its options, calls the client side (pdpp_orch.control) and prints.

Exit status: 0 succeeded, 3 partially_completed, 1 failed or cancelled, 2 usage or configuration
error.
"""

from __future__ import annotations

import os
import warnings
from importlib.metadata import version as package_version
from typing import Annotated

import typer

from pdpp_orch.cli import (
    budget,
    connectors,
    demo,
    deployment,
    erase,
    gaps,
    inert,
    interactions,
    keys,
    logs,
    quarantine,
    records,
    recover,
    report,
    runs,
    schedule,
    stack,
)
from pdpp_orch.cli.common import Options
from pdpp_orch.cli.helptext import PolishedGroup

app = typer.Typer(
    cls=PolishedGroup,
    help="Run PDPP connectors as Temporal workflows and tell the truth about every run.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def _version(asked: bool) -> None:
    if asked:
        print(f"pdpp-orch {package_version('pdpp-orchestrator')}")
        raise typer.Exit()


@app.callback()
def options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Say which Temporal and PostgreSQL the command uses.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Run PDPP connectors as Temporal workflows and tell the truth about every run."""
    Options.verbose = verbose


app.command()(stack.dev)
app.command()(stack.worker)
app.command()(stack.migrate)
app.command()(stack.health)
app.command()(runs.run)
app.command()(runs.watch)
app.command()(interactions.respond)
app.command()(runs.cancel)
app.command()(runs.status)
app.command()(runs.runs)
app.command()(quarantine.quarantine)
app.command()(erase.erase)
app.command()(logs.logs)
app.command()(records.records)
app.add_typer(connectors.app, name="connectors")
app.add_typer(gaps.app, name="gaps")
app.add_typer(recover.app, name="recover")
app.command()(budget.budget)
app.command()(report.report)
app.add_typer(schedule.app, name="schedule")
app.add_typer(deployment.app, name="deployment")
app.command()(demo.demo)
app.command()(demo.upstream)
app.command()(keys.keygen)
app.command("codec-server")(keys.codec_server)


def main() -> None:
    from pdpp_orch.telemetry import configure_logging

    inert.install()  # before logging takes stderr: nothing a command writes emits a control character

    configure_logging(os.environ.get("PDPP_LOG_LEVEL", "WARNING"), os.environ.get("PDPP_LOG_FORMAT", "text"))
    # platformdirs warns when asked for a runtime dir in a container without XDG_RUNTIME_DIR;
    # its fallback under /tmp is fine for the embedded stack.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    app()
