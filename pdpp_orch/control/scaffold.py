"""`connectors new`: a runnable incremental connector from the templates in
pdpp_orch/connectors/templates, its manifest, sample data, a test, and its registry entry.

Nothing that exists is overwritten: the connector's directory must be new (or empty), and the
registry is created when absent and appended to otherwise, refusing a name it already has."""

from __future__ import annotations

import os
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path

from pdpp_orch.control import UsageError
from pdpp_orch.manifest import ConfigError
from pdpp_orch.registry import CONNECTOR_NAME, Registry, bundled_entries, toml_value, user_registry

TEMPLATES = resources.files("pdpp_orch.connectors") / "templates"
PLACEHOLDER = "__NAME__"


class Lang(StrEnum):
    PYTHON = "python"  # on the bundled SDK
    SHELL = "shell"  # bash, protocol lines by hand
    NODE = "node"  # plain Node, no packages, lines by hand


_CONNECTOR_FILE = {Lang.PYTHON: "connector.py", Lang.SHELL: "connector.sh", Lang.NODE: "connector.mjs"}


@dataclass
class Made:
    """What `create` wrote, and what to do next."""

    name: str
    directory: Path
    registry: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def next_steps(self, shown: Callable[[Path], str]) -> list[tuple[str, str]]:
        """What to do next, as (command, why), with paths as `shown` writes them."""
        here = self.registry == user_registry(None, existing=False)
        flag = "" if here else f" --connectors {shown(self.registry)}"
        worker = "started here" if here else f"started with --connectors {shown(self.registry)}"
        return [
            (f"pdpp-orch connectors check {self.name}{flag}", "what would stop a run"),
            (f"pytest {shown(self.directory)}", "its tests, without a stack"),
            (
                f"pdpp-orch run {self.name} --wait{flag}",
                f"on `pdpp-orch dev` ({worker}: workers read their own registry)",
            ),
            (f"pdpp-orch records {self.name}", "what it collected"),
            ("pdpp-orch logs RUN_ID", "its stderr and the run's events"),
        ]


def create(name: str, lang: Lang, directory: Path, registry: Path | None) -> Made:
    """Write connector `name` into `directory` and register it in the operator's registry."""
    if not CONNECTOR_NAME.fullmatch(name):
        raise UsageError(f"{name[:64]!r} is not a connector name (a letter, then letters, digits, _ or -)")
    if name in bundled_entries():
        raise UsageError(f"{name!r} is a bundled connector: an entry of yours would replace it")
    path = user_registry(registry, existing=False)
    assert path is not None
    _refuse_existing(name, path)
    directory = directory.resolve()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UsageError(f"{directory} exists and is not empty: nothing written (--dir elsewhere)")
    made = Made(name, directory, path)
    directory.mkdir(parents=True, exist_ok=True)
    made.files = _write_files(name, lang, directory)
    command = _command(lang, directory / _CONNECTOR_FILE[lang], made)
    _append_entry(path, name, lang, command, directory)
    try:
        Registry.load(path).get(name).load_manifest()
    except ConfigError as e:  # the operator's file had a problem of its own
        raise UsageError(f"wrote {name} into {path}, but the registry does not load: {e}") from e
    return made


def _refuse_existing(name: str, path: Path) -> None:
    if not path.exists():
        return
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8")).get("connectors", {})
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: not a readable TOML file ({str(e)[:200]}): nothing written") from e
    if isinstance(tables, dict) and name in tables:
        raise UsageError(f"{path} already has a connector {name!r}: nothing written")


def _write_files(name: str, lang: Lang, directory: Path) -> list[Path]:
    connector = directory / _CONNECTOR_FILE[lang]
    connector.write_text((TEMPLATES / lang.value / _CONNECTOR_FILE[lang]).read_text(encoding="utf-8"))
    connector.chmod(0o755)
    manifest = directory / "manifest.json"
    manifest.write_text((TEMPLATES / "manifest.json").read_text(encoding="utf-8").replace(PLACEHOLDER, name))
    items = directory / "items.jsonl"
    items.write_text((TEMPLATES / "items.jsonl").read_text(encoding="utf-8"))
    # Named for the connector, so that the tests of several connectors collect side by side.
    test = directory / f"test_{name.replace('-', '_')}.py"
    test.write_text((TEMPLATES / "test_connector.py").read_text(encoding="utf-8"))
    return [connector, manifest, items, test]


def _command(lang: Lang, script: Path, made: Made) -> list[str]:
    """The entry's command; its paths absolute (a connector runs in its own directory)."""
    if lang is Lang.PYTHON:
        return ["python", str(script)]  # the worker's own interpreter, which has the SDK
    if lang is Lang.SHELL:
        return [shutil.which("bash") or "bash", str(script)]
    node = shutil.which("node")
    if node is None:
        made.notes.append("node is not on PATH: install Node (18 or later), or write its path in command")
    return [node or "node", str(script)]


def _append_entry(path: Path, name: str, lang: Lang, command: list[str], directory: Path) -> None:
    try:
        manifest = str((directory / "manifest.json").relative_to(path.parent))
    except ValueError:
        manifest = str(directory / "manifest.json")
    block = (
        f"[connectors.{name}]  # written by `pdpp-orch connectors new --lang {lang.value}`\n"
        f"command = {toml_value(command)}\n"
        f"manifest = {toml_value(manifest)}\n"
        f"env = {toml_value({'ITEMS_FILE': str(directory / 'items.jsonl')})}\n"
        # Its sandbox shows a connector only the system, its own working and data directories
        # and what the entry grants: here its code and sample data, read-only.
        f"paths = {toml_value([str(directory)])}\n"
        "\n"
        f"[connectors.{name}.reasons]\n"
        'archived = "informational"  # an archived item is no miss: the run still succeeds\n'
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    separator = "" if not existing else ("\n" if existing.endswith("\n") else "\n\n")
    with path.open("a", encoding="utf-8") as f:
        f.write(separator + block)
        f.flush()
        os.fsync(f.fileno())
