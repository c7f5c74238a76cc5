"""What every command shares: its consoles, options, settings, exit codes, and the one way a
command runs (errors an operator must fix exit 2 with a message, never a traceback)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from pdpp_orch import telemetry
from pdpp_orch.cli.inert import InertConsole
from pdpp_orch.control import UsageError
from pdpp_orch.control.stack import Stack, database_url, safe_dsn, stack
from pdpp_orch.devstack import DevStackError
from pdpp_orch.manifest import ConfigError
from pdpp_orch.models import RunStatus
from pdpp_orch.settings import Settings, TemporalConfigError
from pdpp_orch.store import SchemaError

# Off a terminal, keep table rows whole instead of wrapping them at 80 columns. Inert: what a
# connector said is shown, its control characters never performed (cli/inert.py).
out = InertConsole(width=None if sys.stdout.isatty() else 240)
err = InertConsole(stderr=True, width=None if sys.stderr.isatty() else 240)

EXIT_CODES = {
    RunStatus.SUCCEEDED: 0,
    RunStatus.PARTIALLY_COMPLETED: 3,
    RunStatus.FAILED: 1,
    RunStatus.CANCELLED: 1,
}

ConnectorsOpt = Annotated[
    Path | None,
    typer.Option(
        "--connectors", help="Connector registry TOML [env: PDPP_CONNECTORS; default ./connectors.toml]"
    ),
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the dev stack keeps its data [env: PDPP_DATA_DIR]")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def settings(data_dir: Path | None = None, connectors: Path | None = None) -> Settings:
    """The environment's settings, with the command's flags over them (a variable that does
    not parse exits 2, naming it; Temporal's configuration is read, and its errors said, when a
    command first asks for it: in `run_async`)."""
    try:
        s = Settings()
    except ValidationError as e:
        for problem in e.errors():
            msg = str(problem["msg"]).removeprefix("Value error, ")
            error(f"{', '.join(map(str, problem['loc']))}: {msg}")
        finish(2)
    if data_dir is not None:
        s.data_dir = data_dir
    if connectors is not None:
        s.connectors = connectors
    return s


class Options:
    """The global options (`pdpp-orch --verbose COMMAND`)."""

    verbose = False


def servers(s: Settings) -> Stack:
    """The stack a command uses; it says which with --verbose, and always when it ignored a
    stale `devstack.json`."""
    found = stack(s)
    if found.ignored:
        err.print(f"note: {escape(found.ignored)}", highlight=False)
    if Options.verbose:
        err.print(f"using {escape(found.describe())}", highlight=False)
    return found


def database(s: Settings) -> str:
    """The PostgreSQL of a command that needs nothing else (`migrate`, `records`): it runs where
    no Temporal is named, as an owner reading their data or a deployment's migration job."""
    url = database_url(s)
    if Options.verbose:
        err.print(f"using PostgreSQL {escape(safe_dsn(url))}", highlight=False)
    return url


def endpoints(s: Settings) -> tuple[str, str]:
    """Temporal address and database URL of `servers(s)`."""
    found = servers(s)
    return found.temporal_address, found.database_url


def finish(code: int) -> NoReturn:
    """Exit with `code` once what is still batched has been exported."""
    telemetry.shutdown()
    # The Temporal client can crash the interpreter at exit (a known SDK issue): leave at once.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError):  # `| head`: the reader has what it wanted
            stream.flush()
    os._exit(code)


def error(message: str) -> None:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)


def run_async(coro: Coroutine[Any, Any, int]) -> None:
    """Run a command's coroutine and exit with the status it returns."""
    try:
        code = asyncio.run(coro)
    except (UsageError, ConfigError, DevStackError, SchemaError, TemporalConfigError) as e:
        error(str(e))
        code = 2
    except KeyboardInterrupt:
        code = 130
    except SystemExit as e:  # a console's closed pipe: leave the same way as any other end
        code = e.code if isinstance(e.code, int) else 1
    finish(code)


def run_plain(command: Callable[[], int]) -> None:
    """Run a command that needs no server (no Temporal client to outlive): errors an operator
    must fix exit 2 with a message, as in `run_async`, and the exit is an ordinary one."""
    try:
        code = command()
    except (UsageError, ConfigError) as e:
        error(str(e))
        code = 2
    raise typer.Exit(code)


def default_group(default: str) -> type[TyperGroup]:
    """A command group whose `default` subcommand runs when no other is named: `gaps NAME`
    stays `gaps list NAME`, while `gaps list requeue` still reaches a connector named requeue."""

    class DefaultGroup(TyperGroup):
        def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer vendors click's Context
            if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
                args = [default, *args]
            return super().parse_args(ctx, args)

    return DefaultGroup


def whole(table: Table, *headers: str) -> Table:
    """The columns of these headers kept whole (the ids a person copies into the next command):
    never cut short or wrapped; on a narrow terminal the other columns wrap instead."""
    for column in table.columns:
        if column.header in headers:
            column.no_wrap = True
            column.min_width = max((len(str(cell)) for cell in column.cells), default=0)
    return table
