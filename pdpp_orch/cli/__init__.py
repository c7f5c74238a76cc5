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

from pdpp_orch.cli import inert
from pdpp_orch.cli.common import Options
from pdpp_orch.cli.lazy import lazy_group

# Each command's module is imported when the command is named (cli/lazy.py): a command starts
# with what it uses, not with Temporal's SDK and every other command's. In the order of `--help`
# (commands, then groups of commands).
COMMANDS = {
    "dev": "stack:dev",
    "worker": "stack:worker",
    "migrate": "stack:migrate",
    "health": "stack:health",
    "run": "runs:run",
    "watch": "runs:watch",
    "respond": "interactions:respond",
    "cancel": "runs:cancel",
    "status": "runs:status",
    "runs": "runs:runs",
    "quarantine": "quarantine:quarantine",
    "erase": "erase:erase",
    "logs": "logs:logs",
    "records": "records:records",
    "budget": "budget:budget",
    "report": "report:report",
    "demo": "demo:demo",
    "upstream": "demo:upstream",
    "keygen": "keys:keygen",
    "codec-server": "keys:codec_server",
    "connectors": "connectors:app",
    "gaps": "gaps:app",
    "recover": "recover:app",
    "schedule": "schedule:app",
    "deployment": "deployment:app",
}

app = typer.Typer(
    cls=lazy_group(COMMANDS),
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


def main() -> None:
    from pdpp_orch.telemetry import configure_logging

    inert.install()  # before logging takes stderr: nothing a command writes emits a control character

    configure_logging(os.environ.get("PDPP_LOG_LEVEL", "WARNING"), os.environ.get("PDPP_LOG_FORMAT", "text"))
    # platformdirs warns when asked for a runtime dir in a container without XDG_RUNTIME_DIR;
    # its fallback under /tmp is fine for the embedded stack.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    app()
