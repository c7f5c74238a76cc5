"""The registry as an operator reads it: what each connector entry says (`connectors list`) and
everything that would stop a run of one, found before a run starts (`connectors check`).

The checks reuse what the worker does at spawn time (the manifest's validation, the binding
check, `resolve`, the worker's secret resolution), run here, on this machine and in this shell's
environment: a connector placed on another task queue runs on that queue's workers, whose
environment and files may differ."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from activities.environment import resolve
from pdpp_orch.manifest import ConfigError, load_manifest
from pdpp_orch.registry import BUNDLED_REGISTRY, SECRET_REF, ConnectorEntry, Registry

_RELATIVE = (
    "a relative path is relative to `cwd`, and without one the connector runs in a fresh "
    "temporary directory: write it absolute or set cwd"
)
# Interpreters, and the script files they are given, which must exist too.
_INTERPRETERS = ("python", "node", "bash", "sh", "zsh", "dash", "ruby", "perl", "deno", "bun")
_SCRIPTS = (".py", ".js", ".mjs", ".cjs", ".ts", ".mts", ".sh", ".bash", ".rb", ".pl")


class Verdict(StrEnum):
    OK = "ok"
    NOTE = "note"  # worth knowing, never stops a run
    PROBLEM = "problem"  # stops a run: `run` would exit 2 or the run would fail at once


class Finding(BaseModel):
    """One thing `connectors check` looked at."""

    what: str
    verdict: Verdict
    detail: str


class Summary(BaseModel):
    """One registry entry as `connectors list` shows it; `settings` is every field of the
    entry (ConnectorEntry), so a field added to the registry shows up without more code."""

    name: str
    source: str
    command: list[str]
    manifest: str
    streams: list[str] | None
    manifest_error: str | None
    budget: str
    placement: str
    settings: dict[str, Any]


def source_of(registry: Registry, name: str) -> str:
    path = registry.origin[name]
    return "bundled" if path == BUNDLED_REGISTRY else str(path)


def shown_command(command: list[str]) -> list[str]:
    """The command as written: the worker's own interpreter shown as `python`."""
    return ["python" if i == 0 and a == sys.executable else a for i, a in enumerate(command)]


def placement(entry: ConnectorEntry, default_queue: str) -> str:
    """The task queue whose workers spawn the connector (the registry's `task_queue`, else the
    worker's own queue)."""
    queue = getattr(entry, "task_queue", None)
    return str(queue) if queue else f"{default_queue} (the workers' queue)"


def budget_text(entry: ConnectorEntry) -> str:
    b = entry.budget
    cost = f", {b.cost_per_item}/item" if b.cost_per_item != 1 else ""
    return "unlimited" if b.units is None else f"{b.units:,} per {b.window}{cost}"


def settings_of(entry: ConnectorEntry) -> dict[str, Any]:
    """Every field of the entry, as JSON; an `env` value written in the registry itself is
    shown by its length only (it may be a secret written inline; references are shown)."""
    data = entry.model_dump(mode="json", exclude={"name"})
    data["command"] = shown_command(entry.command)
    data["env"] = {
        k: v if SECRET_REF.match(v) else f"<{len(v)} characters, not shown>" for k, v in entry.env.items()
    }
    return data


def changed_settings(entry: ConnectorEntry) -> dict[str, Any]:
    """The entry's settings that differ from their defaults (as `settings_of` shows them)."""
    shown = settings_of(entry)
    changed = {}
    for name, field in ConnectorEntry.model_fields.items():
        if field.is_required():
            continue  # name, command, manifest: shown on their own
        if getattr(entry, name) != field.get_default(call_default_factory=True):
            changed[name] = shown[name]
    return changed


def summaries(registry: Registry, default_queue: str) -> list[Summary]:
    out = []
    for name in sorted(registry.entries):
        entry = registry.entries[name]
        streams: list[str] | None = None
        error = None
        try:
            streams = [s.name for s in load_manifest(entry.manifest).streams]
        except ConfigError as e:
            error = str(e)
        out.append(
            Summary(
                name=name,
                source=source_of(registry, name),
                command=shown_command(entry.command),
                manifest=str(entry.manifest),
                streams=streams,
                manifest_error=error,
                budget=budget_text(entry),
                placement=placement(entry, default_queue),
                settings=settings_of(entry),
            )
        )
    return out


def check(entry: ConnectorEntry, default_queue: str) -> list[Finding]:
    """Everything that would stop a run of `entry`, and what is worth knowing, in the order a
    run meets it: manifest, bindings, command, working directory, environment, placement."""
    findings = _manifest(entry)
    home = entry.cwd or Path(tempfile.gettempdir())
    findings += _command(entry, home)
    findings.append(_cwd(entry))
    findings += _environment(entry)
    findings.append(
        Finding(what="placement", verdict=Verdict.NOTE, detail=_placement_note(entry, default_queue))
    )
    return findings


def _manifest(entry: ConnectorEntry) -> list[Finding]:
    try:
        manifest = load_manifest(entry.manifest)
    except ConfigError as e:
        return [Finding(what="manifest", verdict=Verdict.PROBLEM, detail=str(e))]
    names = ", ".join(s.name for s in manifest.streams)
    n = len(manifest.streams)
    found = [
        Finding(
            what="manifest",
            verdict=Verdict.OK,
            detail=f"{entry.manifest}: valid, {n} stream{'s' if n != 1 else ''} ({names})",
        )
    ]
    offered = ", ".join(entry.bindings) or "none"
    try:
        entry.load_manifest()
    except ConfigError as e:
        return [*found, Finding(what="bindings", verdict=Verdict.PROBLEM, detail=str(e))]
    required = ", ".join(manifest.required_bindings) or "none"
    found.append(
        Finding(what="bindings", verdict=Verdict.OK, detail=f"requires {required}; offered {offered}")
    )
    return found


def _command(entry: ConnectorEntry, home: Path) -> list[Finding]:
    """The executable, found as the worker finds it (the connector's PATH; a relative path is
    relative to its working directory), and the script or module an interpreter is given."""
    program = entry.command[0]
    path = os.environ.get("PATH") or os.defpath
    if "/" in program:
        if entry.cwd is None and not Path(program).is_absolute():
            return [_problem("command", f"{program}: {_RELATIVE}")]
        where: str | None = str(home / program)
    else:
        where = shutil.which(program, path=path)
    if where is None:
        return [_problem("command", f"{program}: not found on PATH")]
    p = Path(where)
    if not p.is_file():
        return [_problem("command", f"{where}: no such file")]
    if not os.access(p, os.X_OK):
        return [_problem("command", f"{where}: not executable (chmod +x)")]
    shown = " ".join(shown_command(entry.command))
    return [Finding(what="command", verdict=Verdict.OK, detail=f"{shown} ({where})"), *_script(entry, home)]


def _script(entry: ConnectorEntry, home: Path) -> list[Finding]:
    name = Path(entry.command[0]).name
    if not name.startswith(_INTERPRETERS) or len(entry.command) < 2:
        return []
    args = entry.command[1:]
    if entry.command[0] == sys.executable and "-m" in args[:-1]:
        module = args[args.index("-m") + 1]
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return [_problem("module", f"python -m {module}: no such module for {sys.executable}")]
        return [Finding(what="module", verdict=Verdict.OK, detail=f"{module} importable")]
    script = next((a for a in args if a.endswith(_SCRIPTS) and "://" not in a and a[0] != "-"), None)
    if script is None:
        return []
    if entry.cwd is None and not Path(script).is_absolute():
        return [_problem("script", f"{script}: {_RELATIVE}")]
    path = home / script  # an absolute `script` stays itself
    if not path.is_file():
        return [_problem("script", f"{path}: no such file")]
    return [Finding(what="script", verdict=Verdict.OK, detail=f"{path} found")]


def _cwd(entry: ConnectorEntry) -> Finding:
    if entry.cwd is None:
        return Finding(what="cwd", verdict=Verdict.OK, detail="none: a fresh temporary directory per attempt")
    if entry.cwd.is_dir():
        return Finding(what="cwd", verdict=Verdict.OK, detail=f"{entry.cwd} exists")
    if entry.cwd.exists():
        return _problem("cwd", f"{entry.cwd} exists and is not a directory")
    # The worker creates it (with its parents): it must be able to.
    parent = entry.cwd.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return _problem(
            "cwd", f"{entry.cwd} does not exist and cannot be created ({parent} is not a writable directory)"
        )
    return Finding(
        what="cwd", verdict=Verdict.NOTE, detail=f"{entry.cwd} does not exist yet: created at the first run"
    )


def _environment(entry: ConnectorEntry) -> list[Finding]:
    """Each `env` reference resolved as the worker resolves it at spawn (never shown), and
    the `pass_env` variables this shell does not have."""
    found = []
    for key, value in entry.env.items():
        ref = SECRET_REF.match(value)
        if ref is None:
            found.append(Finding(what=f"env {key}", verdict=Verdict.OK, detail="set in the registry"))
            continue
        try:
            resolved = resolve(entry.name, key, value)
        except ConfigError as e:
            found.append(_problem(f"env {key}", str(e)))
            continue
        found.append(
            Finding(
                what=f"env {key}",
                verdict=Verdict.OK,
                detail=f"{value} resolves ({len(resolved)} characters, not shown)",
            )
        )
    missing = [n for n in entry.pass_env if n not in os.environ]
    if missing:
        found.append(
            Finding(
                what="pass_env",
                verdict=Verdict.NOTE,
                detail=f"not set in this shell (passed only when the worker has them): {', '.join(missing)}",
            )
        )
    return found


def _placement_note(entry: ConnectorEntry, default_queue: str) -> str:
    where = placement(entry, default_queue)
    return f"runs on workers of task queue {where}; checked here, on {os.uname().nodename}"


def _problem(what: str, detail: str) -> Finding:
    return Finding(what=what, verdict=Verdict.PROBLEM, detail=detail)
