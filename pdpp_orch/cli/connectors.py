"""`connectors list|check|new`: the registry as an operator reads it, what would stop a run
before one starts, and a new connector that runs at the first try."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from pdpp_orch.cli.common import ConnectorsOpt, JsonOpt, out, run_plain, settings
from pdpp_orch.cli.complete import connector_names
from pdpp_orch.control import connectors as control
from pdpp_orch.control import scaffold
from pdpp_orch.registry import BUNDLED_REGISTRY, Registry
from pdpp_orch.settings import Settings

app = typer.Typer(
    help="The connector registry: which connectors there are, from which file, and whether one can run.",
    no_args_is_help=True,
)

_MARKS = {
    control.Verdict.OK: "[green]ok[/green]     ",
    control.Verdict.NOTE: "[yellow]note[/yellow]   ",
    control.Verdict.PROBLEM: "[red]problem[/red]",
}


def short(path: str | Path) -> str:
    """A path as an operator wants to read it: relative to here when it is below here, a
    bundled file by its name."""
    p = Path(path)
    if p.parent == BUNDLED_REGISTRY.parent:
        return f"bundled:{p.name}"
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


@app.command("list")
def list_(as_json: JsonOpt = False, connectors: ConnectorsOpt = None) -> None:
    """Every registered connector: the file it came from (bundled, or your registry), its
    command, manifest, streams, budget and placement (the task queue whose workers run it).

    With --json, every setting of each entry as well."""
    s = settings(connectors=connectors)
    run_plain(lambda: _list(s, as_json))


def _list(s: Settings, as_json: bool) -> int:
    rows = control.summaries(Registry.load(s.connectors), s.task_queue)
    if as_json:
        print(json.dumps([r.model_dump() for r in rows], indent=2))
        return 0
    t = Table("name", "from", "command", "manifest", "streams", "budget", "placement")
    for r in rows:
        streams = escape(", ".join(r.streams)) if r.streams is not None else "[red]manifest invalid[/red]"
        t.add_row(
            escape(r.name),
            escape(short(r.source) if r.source != "bundled" else "bundled"),
            escape(" ".join(short(a) if "/" in a else a for a in r.command)),
            escape(short(r.manifest)),
            streams,
            r.budget,
            escape(r.placement),
        )
    out.print(t)
    bad = [r.name for r in rows if r.manifest_error]
    if bad:
        out.print(f"a manifest does not load: `pdpp-orch connectors check {escape(bad[0])}` says why")
    return 0


@app.command()
def check(
    name: Annotated[
        str, typer.Argument(help="Connector name from the registry.", autocompletion=connector_names)
    ],
    as_json: JsonOpt = False,
    connectors: ConnectorsOpt = None,
) -> None:
    """Find everything that would stop a run of connector NAME before one starts: its
    registry entry, manifest, required bindings, command (found, executable; the script or
    module it runs), working directory, and every `env:`/`file:` secret reference resolved
    (never printed).

    Exit status as for `run`: 0 when nothing would stop a run, 2 when something would. Checked
    on this machine, in this shell's environment: a worker elsewhere resolves them in its own."""
    s = settings(connectors=connectors)
    run_plain(lambda: _check(s, name, as_json))


def _check(s: Settings, name: str, as_json: bool) -> int:
    registry = Registry.load(s.connectors)
    findings = control.check(registry.get(name), s.task_queue)
    problems = [f for f in findings if f.verdict is control.Verdict.PROBLEM]
    if as_json:
        print(json.dumps([f.model_dump(mode="json") for f in findings], indent=2))
        return 2 if problems else 0
    source = control.source_of(registry, name)
    out.print(f"connector {escape(name)}, from {escape(source)}", highlight=False)
    for setting, value in control.changed_settings(registry.get(name)).items():
        out.print(f"  {'setting':9}{escape(setting)} = {escape(json.dumps(value))}", highlight=False)
    for f in findings:
        out.print(f"  {_MARKS[f.verdict]}  {escape(f.what)}: {escape(f.detail)}", highlight=False)
    if problems:
        n = len(problems)
        out.print(
            f"{n} problem(s) would stop a run of {escape(name)}: fix, then check again", highlight=False
        )
        return 2
    out.print(f"nothing would stop a run: `pdpp-orch run {escape(name)} --wait`", highlight=False)
    return 0


@app.command()
def new(
    name: Annotated[
        str, typer.Argument(help="The new connector's name (a letter, then letters, digits, _ or -).")
    ],
    lang: Annotated[
        scaffold.Lang,
        typer.Option("--lang", help="python (on the bundled SDK), shell or node (lines by hand)."),
    ] = scaffold.Lang.PYTHON,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Where its files go [default: ./NAME]", file_okay=False)
    ] = None,
    connectors: ConnectorsOpt = None,
) -> None:
    """Write a runnable incremental connector NAME: the connector, its manifest, sample data,
    a test of it (`pytest DIR`), and its entry in your registry (--connectors, else
    $PDPP_CONNECTORS, else ./connectors.toml: created if absent, appended to otherwise; an
    entry of that name already there is never overwritten).

    Its first `pdpp-orch run NAME --wait` succeeds. It collects incrementally with a cursor,
    skips what it may skip (an informational skip), reports an item it could not fetch as a
    detail gap, and fetches exactly the gaps a recovery run serves it."""
    s = settings(connectors=connectors)
    run_plain(lambda: _new(s, name, lang, directory or Path(name)))


def _new(s: Settings, name: str, lang: scaffold.Lang, directory: Path) -> int:
    made = scaffold.create(name, lang, directory, s.connectors)
    files = ", ".join(f.name for f in made.files)
    out.print(f"wrote {escape(short(made.directory))}/: {escape(files)}", highlight=False)
    out.print(f"registered {escape(name)} in {escape(short(made.registry))}", highlight=False)
    for note in made.notes:
        out.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)
    out.print("next:", highlight=False)
    width = max(len(command) for command, _ in made.next_steps(short))
    for command, why in made.next_steps(short):
        out.print(f"  {escape(command.ljust(width))}  # {escape(why)}", highlight=False)
    return 0
