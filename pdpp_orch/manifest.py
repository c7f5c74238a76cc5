"""PDPP connector manifests: loading and the checks that must pass before a connector is spawned.

The reference implementation's manifests load unchanged: its legacy spellings are normalised as
it normalises them (`"semantics": "append"` is `append_only`; `connector_id` without
`connector_key` names the connector), and what it refuses stays refused (docs/pdpp-compatibility.md).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, PrivateAttr, ValidationError

# Used with fullmatch: `$` would also match before a trailing newline.
STREAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,127}")
CONNECTOR_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
# Field names are the data's own, so any printable text; they end up in error messages.
FIELD_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


# The bindings a manifest may declare under runtime_requirements.bindings (the reference's set).
Binding = Literal["browser", "filesystem", "interactive", "network"]
BINDINGS: tuple[Binding, ...] = ("browser", "filesystem", "interactive", "network")

# The reference's connector identities (its generated connector registry at the commit named in
# docs/pdpp-compatibility.md): a `connector_id` names a connector by one of these, or by its own
# `connector_key`. A registry URL of any other slug is refused, as the reference refuses it.
REGISTRY_URL = "https://registry.pdpp.dev/connectors/"
FIRST_PARTY_KEYS = frozenset(
    "amazon anthropic apple_contacts apple-health apple-photos chase chatgpt claude-code codex "
    "doordash github gmail google-calendar google-contacts google-maps google-maps-data-portability "
    "google-messages google-takeout groupme heb ical imessage jellyfin linkedin loom meta "
    "netflix-export notion oura pocket reddit shopify slack spotify steam strava twitter-archive "
    "uber usaa venmo whatsapp wholefoods whoop ynab northstar_hr_native".split()
)
LEGACY_ALIASES = {
    "apple_photos": "apple-photos",
    "claude_code": "claude-code",
    "google_messages": "google-messages",
    "google_takeout": "google-takeout",
}


class ConfigError(Exception):
    """A registry or manifest problem, reported to the operator before anything runs."""


def canonical_key(connector_id: Any) -> str | None:
    """The connector key a reference `connector_id` stands for, or None when it names none."""
    if not isinstance(connector_id, str) or not connector_id.strip():
        return None
    cid = connector_id.strip()
    if cid.startswith(REGISTRY_URL):
        slug = cid[len(REGISTRY_URL) :].removesuffix("/")
        return slug if slug in FIRST_PARTY_KEYS else None
    if cid in FIRST_PARTY_KEYS:
        return cid
    return LEGACY_ALIASES.get(cid)


def _or_empty(value: Any) -> Any:
    return {} if value is None else value


def _semantics(value: Any) -> Any:
    # The reference's legacy spelling; it projects "append" to append_only at registration.
    return "append_only" if value == "append" else value


class StreamSpec(BaseModel):
    name: str
    primary_key: list[str] = Field(min_length=1)
    cursor_field: str | None = None
    consent_time_field: str | None = None
    incremental: bool = False
    semantics: Annotated[Literal["append_only", "mutable_state"], BeforeValidator(_semantics)] = (
        "mutable_state"
    )
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    coverage_strategy: Literal[
        "checkpoint_window",
        "full_inventory",
        "parent_detail_accounting",
        "snapshot_import_receipt",
        "singleton_presence",
    ] = "checkpoint_window"
    state_stream: str | None = None
    parent_streams: list[str] | None = None

    model_config = {"populate_by_name": True}

    @property
    def parents(self) -> list[str]:
        if self.state_stream is not None:
            return [self.state_stream]
        return list(self.parent_streams or [])


class RefreshPolicy(BaseModel):
    max_recovery_attempts: int = Field(default=5, ge=0)
    max_cooldown_cycles: int | None = Field(default=None, ge=0)
    rate_limit_sensitivity: str | None = None


class Capabilities(BaseModel):
    refresh_policy: RefreshPolicy = Field(default_factory=RefreshPolicy)


class BindingRequirement(BaseModel):
    """`runtime_requirements.bindings.NAME`: whether the connector cannot run without it."""

    required: bool = Field(default=False, strict=True)


class RuntimeRequirements(BaseModel):
    bindings: Annotated[dict[Binding, BindingRequirement], BeforeValidator(_or_empty)] = Field(
        default_factory=dict
    )


class Manifest(BaseModel):
    connector_key: str
    version: str = "0.0.0"
    streams: list[StreamSpec] = Field(min_length=1)
    capabilities: Capabilities = Field(default_factory=Capabilities)
    runtime_requirements: Annotated[RuntimeRequirements, BeforeValidator(_or_empty)] = Field(
        default_factory=RuntimeRequirements
    )

    # Indexes, so that looking a stream up or walking its dependants costs the same for a
    # manifest of 3 streams and of 20,000.
    _by_name: dict[str, StreamSpec] = PrivateAttr(default_factory=dict)
    _children: dict[str, list[StreamSpec]] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any) -> None:
        for s in self.streams:
            self._by_name.setdefault(s.name, s)
            for p in s.parents:
                self._children.setdefault(p, []).append(s)

    def stream(self, name: str) -> StreamSpec | None:
        return self._by_name.get(name)

    def children_of(self, parent: str) -> list[StreamSpec]:
        """Streams whose checkpoint depends on `parent`'s."""
        return self._children.get(parent, [])

    @property
    def required_bindings(self) -> list[str]:
        """The bindings the connector declares it cannot run without."""
        return [b for b, req in self.runtime_requirements.bindings.items() if req.required]


def check_dependencies(manifest: Manifest) -> None:
    """Reject bad checkpoint dependencies: names, self/unknown/duplicate parents, both fields,
    empty parent lists and cycles of any length. Linear in the number of streams."""
    counts = Counter(s.name for s in manifest.streams)
    dupes = sorted(n for n, k in counts.items() if k > 1)
    if dupes:
        raise ConfigError(f"duplicate stream names: {', '.join(dupes)}")
    if not CONNECTOR_KEY.fullmatch(manifest.connector_key):
        raise ConfigError(
            f"invalid connector_key {manifest.connector_key[:64]!r} (letters, digits, _ . -; ≤128)"
        )
    for s in manifest.streams:
        _check_stream(s, counts)
    cycle = _find_cycle({s.name: s.parents for s in manifest.streams})
    if cycle:
        raise ConfigError("checkpoint dependency cycle: " + " -> ".join(cycle))


def _check_stream(s: StreamSpec, known: Counter[str]) -> None:
    where = f"stream {s.name[:64]!r}"
    if not STREAM_NAME.fullmatch(s.name):
        raise ConfigError(f"{where}: invalid stream name (letters, digits, _ . -; ≤128)")
    for f in [*s.primary_key, s.cursor_field, s.consent_time_field]:
        if f is not None and not FIELD_NAME.fullmatch(f):
            raise ConfigError(f"{where}: invalid field name {f[:64]!r} (1-128 printable characters)")
    if s.state_stream is not None and s.parent_streams is not None:
        raise ConfigError(f"{where}: has both state_stream and parent_streams")
    if s.parent_streams is not None and not s.parent_streams:
        raise ConfigError(f"{where}: parent_streams is empty")
    parents = s.parents
    if len(set(parents)) != len(parents):
        raise ConfigError(f"{where}: duplicate parent in parent_streams {parents}")
    for p in parents:
        if p == s.name:
            raise ConfigError(f"{where}: depends on itself")
        if p not in known:
            raise ConfigError(f"{where}: unknown parent stream {p!r}")


def _find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A depth-first search with its own stack: a chain of thousands of streams is no cycle and
    must not exhaust Python's."""
    on_path, done = 1, 2
    state: dict[str, int] = {}
    for root in graph:
        if root in state:
            continue
        path, todo = [root], [iter(graph[root])]
        state[root] = on_path
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                state[path.pop()] = done
                todo.pop()
            elif state.get(nxt) == on_path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = on_path
                path.append(nxt)
                todo.append(iter(graph[nxt]))
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_manifest(path: Path) -> Manifest:
    """Read and fully validate a manifest file; every problem is a ConfigError naming the file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: manifest file not found") from e
    except (OSError, ValueError, RecursionError) as e:
        # ValueError: bad JSON or UTF-8, NaN, an integer too long to read, a NUL in the path.
        raise ConfigError(f"{path}: not a readable JSON manifest: {str(e)[:200]}") from e
    if not isinstance(raw, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(raw), "a number"
        )
        raise ConfigError(f"{path}: a manifest must be a JSON object, not {kind}")
    given_key = raw.get("connector_key")
    if _blank(given_key) and not _blank(raw.get("connector_id")):
        # A legacy manifest names its connector by connector_id alone.
        raw = {**raw, "connector_key": canonical_key(raw["connector_id"]) or raw["connector_id"].strip()}
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: field {field!r}: {first['msg']}") from e
    try:
        check_identity(raw, given_key)
        check_dependencies(manifest)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e
    return manifest


def _blank(value: Any) -> bool:
    return not isinstance(value, str) or not value.strip()


def check_identity(raw: dict[str, Any], given_key: Any) -> None:
    """The reference's identity rules: connector_id and connector_key, when both are given,
    name the same connector; a manifest of a provider or a storage binding is not a connector's."""
    cid = raw.get("connector_id")
    if isinstance(cid, str) and cid.strip():
        cid, canon = cid.strip(), canonical_key(cid)
        if isinstance(given_key, str) and given_key.strip():
            if canon is not None and canon != given_key:
                raise ConfigError(
                    f"connector_key {given_key[:64]!r} must be {canon!r}, the key connector_id names"
                )
            if canon is None and cid != given_key:
                raise ConfigError(
                    f"connector_id {cid[:64]!r} must match connector_key {given_key[:64]!r}"
                    " (use manifest_uri for registry or document provenance)"
                )
        elif canon is None and cid.startswith(REGISTRY_URL):
            raise ConfigError(f"connector_id {cid[:96]!r} is no known connector: declare connector_key")
    if not _blank(raw.get("provider_id")):
        raise ConfigError("provider_id: a provider manifest is not a connector manifest")
    if "storage_binding" in raw:
        raise ConfigError("storage_binding: a native storage manifest is not a connector manifest")
