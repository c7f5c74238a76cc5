"""`--help` reads as paragraphs with readable types, and shell completion offers connector
names, in-process and in a real shell completion call."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from pdpp_orch.cli import app
from pdpp_orch.cli.helptext import polish, reflow, type_word
from pdpp_orch.cli.lazy import every_command

WIDE = {"COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"}


def walk(group: Any) -> list[Any]:
    return [group, *(c for sub in every_command(group).values() for c in walk(sub))]


def commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the CLI, groups included."""
    found = [prefix]
    for name, sub in every_command(group).items():
        found += commands(sub, (*prefix, name))
    return found


def test_docstrings_are_reflowed_into_paragraphs() -> None:
    text = """First line that the source
    wrapped here.

    Second paragraph,
    also wrapped:
    - a list item
      that continues
    - another"""
    assert reflow(text) == (
        "First line that the source wrapped here.\n\n"
        "Second paragraph, also wrapped:\n- a list item that continues\n- another"
    )
    assert [type_word(t) for t in ("<bool>", "<str>", "<list[str]>", "<a|b>", "<int range>", None)] == [
        "bool",
        "TEXT",
        "TEXT",
        "a|b",
        "INTEGER",
        None,
    ]


def test_every_help_has_no_hard_wraps_and_readable_types() -> None:
    runner = CliRunner()
    root = typer.main.get_command(app)
    polish(root)
    paths = commands(root)
    assert ("connectors", "new") in paths and ("records",) in paths and ("logs",) in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env=WIDE, prog_name="pdpp-orch")
        assert result.exit_code == 0, (path, result.output)
        assert not re.search(r"<(bool|str|int|float|path|list\[\w+\])>", result.output), (path, result.output)
    for cmd in walk(root):
        texts = [cmd.help or "", *(getattr(p, "help", None) or "" for p in cmd.params)]
        for paragraph in "\n\n".join(texts).split("\n\n"):
            # Within a paragraph only a list item starts a new line.
            assert all(re.match(r"(?:[-*•]|\d+[.)])\s", line) for line in paragraph.split("\n")[1:]), (
                paragraph
            )
    run = runner.invoke(app, ["run", "--help"], env=WIDE, prog_name="pdpp-orch").output
    assert "[env: PDPP_CONNECTORS; default ./connectors.toml]" in run  # not eaten as markup
    assert re.search(r"--wait\s+Show progress", run)  # a flag shows no type
    assert re.search(r"--stream\s+TEXT\s+Only this stream", run)
    top = runner.invoke(app, ["--help"], env=WIDE, prog_name="pdpp-orch").output
    assert "no checkpoint commits, the outcome says `cancelled` (once checkpoints" in top


def complete(words: str, env: dict[str, str]) -> list[str]:
    """What bash completion offers for `words` (the last one being completed), in-process."""
    comp = {
        "_PDPP_ORCH_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - 1),
    }
    result = CliRunner().invoke(app, [], env={**env, **comp}, prog_name="pdpp-orch")
    assert result.exit_code == 0, result.output
    return result.output.split()


def test_connector_names_complete_and_run_ids_complete_quietly_without_a_stack(tmp_path: Path) -> None:
    registry = tmp_path / "connectors.toml"
    registry.write_text('[connectors.exotic]\ncommand = ["true"]\nmanifest = "m.json"\n')
    env = {"PDPP_CONNECTORS": str(registry), "PDPP_DATA_DIR": str(tmp_path)}
    env |= {"TEMPORAL_ADDRESS": "", "PDPP_DATABASE_URL": ""}
    for command in ("run", "records", "connectors check", "recover show", "schedule create"):
        assert complete(f"pdpp-orch {command} ex", env) == ["example", "exotic"], command
    # No stack to ask: nothing offered, nothing printed, no traceback.
    assert complete("pdpp-orch logs x", env) == []
    assert complete("pdpp-orch schedule pause x", env) == []


def test_the_shell_gets_connector_names_from_the_installed_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pdpp-orch")],  # completion knows its program by name
        env={
            **os.environ,
            "_PDPP_ORCH_COMPLETE": "complete_bash",
            "COMP_WORDS": "pdpp-orch run exa",
            "COMP_CWORD": "2",
        },
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert (result.returncode, result.stdout.split(), result.stderr) == (0, ["example"], "")


def _connector_params(command: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(command path, parameter) of every parameter that names a connector of the registry."""
    for name, sub in every_command(command).items():
        yield from _connector_params(sub, f"{path} {name}".strip())
    for param in getattr(command, "params", []):
        if param.name in ("name", "sync") and path != "connectors new":  # `new` names a new one
            yield path, param


def test_every_parameter_that_names_a_connector_completes() -> None:
    missing = [
        path
        for path, param in _connector_params(typer.main.get_command(app))
        if getattr(param, "_custom_shell_complete", None) is None
    ]
    assert missing == []
