"""The connector registry: bundled connectors plus the operator's TOML file."""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from pdpp_orch.budget import BudgetConfig, parse_window
from pdpp_orch.manifest import BINDINGS, Binding, ConfigError, Manifest, load_manifest
from pdpp_orch.models import CheckpointPolicy, RecoveryClass
from pdpp_orch.policy import RetryPolicy
from pdpp_orch.sandbox_config import GrantedPath, Limits

BUNDLED_REGISTRY = Path(__file__).parent / "connectors" / "bundled.toml"
DEFAULT_MAX_STATE_BYTES = 64 * 1024 * 1024
MIN_MAX_LINE_BYTES = 1024 * 1024
DEFAULT_STALL_TIMEOUT_S = 600.0
# Connector names end up in workflow ids, schedule ids, file names and log lines. Both are
# used with fullmatch: `$` would also match before a trailing newline.
CONNECTOR_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# A skip reason as a run keeps it (pdpp_orch.words.MAX_REASON_CHARS): a longer one would never match.
REASON = re.compile(r"[^\x00-\x1f\x7f-\x9f]{1,64}")
# The longest wait a budget window or a retry back-off may name: beyond it datetime arithmetic
# overflows, long before anyone would want to wait that long.
MAX_WAIT_S = 366 * 86400.0
# Task queue names end up in workflow commands, log lines and the UI.
TASK_QUEUE = re.compile(r"[!-~]{1,200}")
DEFAULT_PLACEMENT_TIMEOUT_S = 3600.0
# An env value of this form is a reference resolved by the worker at spawn time, never stored.
SECRET_REF = re.compile(r"^(env|file):(.*)$", re.DOTALL)


class Budget(BaseModel):
    """`[connectors.NAME.budget]`: what forward runs and recoveries may spend upstream."""

    units: int | None = Field(
        default=None, ge=0, strict=True, description="units per window; absent: unlimited"
    )
    window: str = Field(default="24h", description='e.g. "24h", "90m", "7d"')
    cost_per_item: int = Field(default=1, ge=1, strict=True, description="units one fetched item costs")

    model_config = {"extra": "forbid"}

    @field_validator("window")
    @classmethod
    def _window_parses(cls, v: str) -> str:
        if parse_window(v) > MAX_WAIT_S:
            raise ValueError(f"budget window {v!r} is longer than 366 days")
        return v

    def config(self) -> BudgetConfig:
        return BudgetConfig(units=self.units, window_seconds=parse_window(self.window))


class ConnectorEntry(BaseModel):
    """One `[connectors.NAME]` table."""

    name: str
    command: list[str] = Field(min_length=1)
    manifest: Path
    env: dict[str, str] = Field(
        default_factory=dict, description='values may be "env:NAME" or "file:/path" references'
    )
    pass_env: list[str] = Field(
        default_factory=list, description="worker environment variables passed through when set"
    )
    checkpoint_policy: CheckpointPolicy = CheckpointPolicy.COMMIT_PROVEN
    # Strict numbers: a TOML `true` is not a byte count or a duration.
    max_state_bytes: int = Field(default=DEFAULT_MAX_STATE_BYTES, gt=0, strict=True)
    max_line_bytes: int | None = Field(
        default=None, gt=0, strict=True, description="default: max(max_state_bytes, 64 MiB) + 1 MiB"
    )
    cwd: Path | None = None
    stall_timeout_seconds: float = Field(default=DEFAULT_STALL_TIMEOUT_S, gt=0, strict=True)
    max_run_seconds: float | None = Field(
        default=None, gt=0, strict=True, description="default: the run's own limit"
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    budget: Budget = Field(default_factory=Budget)
    bindings: list[Binding] = Field(
        default_factory=lambda: list(BINDINGS),
        description="what this runtime offers the connector (START.bindings); default: all four",
    )
    reasons: dict[str, RecoveryClass] = Field(
        default_factory=dict,
        description="recovery class of the connector's own skip reasons, for misses without a recovery_hint",
    )
    sandbox: bool = Field(default=True, description="false: runs unsandboxed, and every surface says so")
    paths: list[GrantedPath] = Field(
        default_factory=list,
        description='what the sandbox lets it see: "PATH" read-only, { path = "PATH", writable = true }',
    )
    limits: Limits = Field(default_factory=Limits)
    task_queue: str | None = Field(
        default=None,
        description="run the connector only on workers of this task queue (where its data lives)",
    )
    placement_timeout_seconds: float = Field(
        default=DEFAULT_PLACEMENT_TIMEOUT_S,
        gt=0,
        le=MAX_WAIT_S,
        strict=True,
        description="how long a run waits for a worker of task_queue before it fails (worker_unavailable)",
    )

    model_config = {"extra": "forbid"}

    @field_validator("task_queue")
    @classmethod
    def _a_queue_name(cls, v: str | None) -> str | None:
        if v is not None and not TASK_QUEUE.fullmatch(v):
            raise ValueError("a task queue is 1-200 printable characters, no spaces")
        return v

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not CONNECTOR_NAME.fullmatch(v):
            raise ValueError("a connector name is a letter, then letters, digits, _ or - (≤ 64)")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not ENV_NAME.fullmatch(key):
                raise ValueError(f"{key[:64]!r} is not an environment variable name")
            if "\x00" in value:
                raise ValueError(f"{key}: a value cannot contain NUL")
            ref = SECRET_REF.match(value)
            if ref and ref.group(1) == "env" and not ENV_NAME.fullmatch(ref.group(2)):
                # Never the value: it may be the secret itself, pasted where its name belongs.
                raise ValueError(f"{key}: env: must be followed by an environment variable's name")
            if ref and ref.group(1) == "file" and not ref.group(2):
                raise ValueError(f"{key}: file: needs a path")
        return v

    @field_validator("reasons")
    @classmethod
    def _reason_names(cls, v: dict[str, RecoveryClass]) -> dict[str, RecoveryClass]:
        for reason in v:
            if not REASON.fullmatch(reason):
                raise ValueError(f"{reason[:64]!r} is not a reason (1-64 printable characters)")
        return v

    @field_validator("pass_env")
    @classmethod
    def _pass_env_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"{name[:64]!r} is not an environment variable name")
        return v

    @field_validator("command")
    @classmethod
    def _python_is_this_python(cls, v: list[str]) -> list[str]:
        if any("\x00" in a for a in v):
            raise ValueError("an argument cannot contain NUL")
        # "python" in a registry means the interpreter the worker runs on, so bundled and
        # user connectors find the same installed packages.
        return [sys.executable if i == 0 and a in ("python", "python3") else a for i, a in enumerate(v)]

    @field_validator("manifest", "cwd")
    @classmethod
    def _a_path(cls, v: Path | None) -> Path | None:
        if v is not None and "\x00" in str(v):
            raise ValueError("a path cannot contain NUL")
        return v

    @field_validator("paths", mode="before")
    @classmethod
    def _paths_as_tables(cls, v: object) -> object:
        return [{"path": p} if isinstance(p, str) else p for p in v] if isinstance(v, list) else v

    @field_validator("retry")
    @classmethod
    def _waits_that_fit(cls, v: RetryPolicy) -> RetryPolicy:
        for cls_name in ("provider_pressure", "transient"):
            p = getattr(v, cls_name)
            for f in ("base_seconds", "cap_seconds"):
                seconds = getattr(p, f)
                if not math.isfinite(seconds) or seconds > MAX_WAIT_S:
                    raise ValueError(f"{cls_name}.{f} must be at most 366 days, not {seconds}")
            if not math.isfinite(p.factor):
                raise ValueError(f"{cls_name}.factor must be finite")
        return v

    @property
    def line_limit(self) -> int:
        # A cursor over max_state_bytes must still be read whole, to be reported as
        # state_too_large rather than as an unreadable line.
        return self.max_line_bytes or max(self.max_state_bytes, DEFAULT_MAX_STATE_BYTES) + MIN_MAX_LINE_BYTES

    def load_manifest(self) -> Manifest:
        """The validated manifest, and a check that this entry offers every binding it requires."""
        manifest = load_manifest(self.manifest)
        missing = [b for b in manifest.required_bindings if b not in self.bindings]
        if missing:
            offered = ", ".join(self.bindings) or "none"
            raise ConfigError(
                f"connector {self.name!r} requires the binding(s) {', '.join(missing)} "
                f"(runtime_requirements.bindings of {self.manifest}), which its registry entry "
                f"does not offer (bindings = [{offered}])"
            )
        return manifest


def _read_toml(path: Path, bundled: dict[str, ConnectorEntry] | None = None) -> dict[str, ConnectorEntry]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: connector registry not found") from e
    except (OSError, ValueError, RecursionError) as e:
        # ValueError: bad TOML or UTF-8, or an integer too long to read.
        raise ConfigError(f"{path}: not a readable TOML file: {str(e)[:200]}") from e
    unknown = sorted(set(raw) - {"connectors"})
    if unknown:
        # Most likely a misspelt [connectors.NAME] table, which would otherwise vanish silently.
        raise ConfigError(
            f"{path}: unknown top-level key {unknown[0][:64]!r} (expected [connectors.NAME] tables)"
        )
    tables = raw.get("connectors", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: 'connectors' must be a table of [connectors.NAME] tables")
    entries: dict[str, ConnectorEntry] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: connectors.{name} must be a table")
        if "name" in table:
            # The table's own name is the connector's; a `name` key would silently rename it.
            raise ConfigError(
                f"{path}: connectors.{name}.name: not a field (the table's name is the connector's)"
            )
        if bundled and name in bundled and "command" not in table and "manifest" not in table:
            # Without a command of its own, a table adds to the bundled connector of its name
            # (e.g. only `task_queue`): its fields replace the bundled entry's.
            table = bundled[name].model_dump(exclude={"name"}) | table
        entry = _entry(path, name, table)
        entries[name] = entry
    return entries


def _entry(path: Path, name: str, table: dict[str, Any]) -> ConnectorEntry:
    """One table's entry, its paths relative to the registry file."""
    try:
        entry = ConnectorEntry.model_validate({"name": name, **table})
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        # Our own words only: pydantic's error (the chained cause, which a Temporal failure
        # and a log would carry) quotes the value, which may be a secret.
        raise ConfigError(f"{path}: connectors.{name}.{field}: {first['msg']}") from None
    return _anchored(entry, path.parent)


def _anchored(entry: ConnectorEntry, base: Path) -> ConnectorEntry:
    """The entry's paths made absolute: relative ones are relative to its registry file."""
    entry.manifest = (base / entry.manifest).resolve()
    if entry.cwd is not None:
        entry.cwd = (base / entry.cwd).resolve()
    for granted in entry.paths:
        granted.path = str((base / Path(granted.path).expanduser()).resolve())
    for key, value in entry.env.items():
        ref = SECRET_REF.match(value)
        if ref and ref.group(1) == "file":
            entry.env[key] = f"file:{(base / ref.group(2)).resolve()}"
    return entry


def bundled_entries() -> dict[str, ConnectorEntry]:
    """The connectors that ship with pdpp-orchestrator."""
    return _read_toml(BUNDLED_REGISTRY)


class Registry:
    """Connector entries by name; the operator's file overrides bundled entries of the same name.
    `origin` names the file each entry was read from (`connectors list` shows it)."""

    def __init__(
        self,
        entries: dict[str, ConnectorEntry],
        sources: list[Path],
        origin: dict[str, Path],
        looked_in: Path | None = None,
    ):
        self.entries = entries
        self.sources = sources
        self.origin = origin
        # Where ./connectors.toml was looked for and not found (only the bundled ones loaded).
        self.looked_in = looked_in

    @classmethod
    def load(cls, path: str | Path | None = None) -> Registry:
        """Load bundled connectors plus `path`, else $PDPP_CONNECTORS, else ./connectors.toml
        (the last only if it exists)."""
        entries = _read_toml(BUNDLED_REGISTRY)
        sources = [BUNDLED_REGISTRY]
        origin = dict.fromkeys(entries, BUNDLED_REGISTRY)
        user = user_registry(path)
        if user is not None:
            mine = _read_toml(user, entries)
            entries.update(mine)
            sources.append(user)
            origin.update(dict.fromkeys(mine, user))
            return cls(entries, sources, origin)
        return cls(entries, sources, origin, looked_in=Path.cwd())

    def describe(self) -> str:
        """Which registry this is, in words: its file, or that there is none and where
        ./connectors.toml was looked for (what a CLI and a worker reading different ones print)."""
        if len(self.sources) > 1:
            return str(self.sources[-1])
        where = f" in {self.looked_in}" if self.looked_in else ""
        return f"the bundled connectors only (no --connectors, PDPP_CONNECTORS or ./connectors.toml{where})"

    def get(self, name: str) -> ConnectorEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise ConfigError(unknown_connector(name, self.entries)) from None

    def secret_files(self) -> list[Path]:
        """Every file a registry names that a connector must not read: the registry files
        themselves and each entry's `file:` secrets (a connector gets its own as values)."""
        files = list(self.sources)
        for entry in self.entries.values():
            for value in entry.env.values():
                ref = SECRET_REF.match(value)
                if ref and ref.group(1) == "file":
                    files.append(Path(ref.group(2)))
        return files


def unknown_connector(name: str, registered: Iterable[str], stored: Iterable[str] = ()) -> str:
    """What every command says of a connector name it does not know: the registered names, and
    those only the store knows (data of a connector registered elsewhere, or no longer)."""
    names = sorted(set(registered))
    known = ", ".join(names) or "none"
    elsewhere = sorted(set(stored) - set(names))
    more = f"; with data here but not in this registry: {', '.join(elsewhere)}" if elsewhere else ""
    return f"unknown connector {name!r} (known: {known}{more})"


def user_registry(path: str | Path | None = None, *, existing: bool = True) -> Path | None:
    """The operator's registry file: `path`, else $PDPP_CONNECTORS, else ./connectors.toml (that
    one only if it exists, unless `existing` is False: `connectors new` creates it)."""
    explicit = path or os.environ.get("PDPP_CONNECTORS")
    user = Path(explicit) if explicit else Path("connectors.toml")
    if explicit or user.exists() or not existing:
        return user.resolve()
    return None


def toml_value(value: Any) -> str:
    """A TOML value: tables inline, lists item by item, scalars as JSON writes them (TOML-compatible)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)
