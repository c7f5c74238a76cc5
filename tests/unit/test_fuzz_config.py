"""Bad registries and manifests, property-based (issue 7): every file either loads into something
a run can use, or is a ConfigError naming the file (and the field, when one field is wrong) —
never a raw KeyError, TypeError, RecursionError or pydantic traceback."""

from __future__ import annotations

import graphlib
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdpp_orch.manifest import ConfigError, Manifest, load_manifest
from pdpp_orch.models import RecoveryClass
from pdpp_orch.policy import ClassPolicy, RetryPolicy
from pdpp_orch.registry import Registry
from tests.helpers import fuzz


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config-fuzz")


def fresh(workdir: Path, suffix: str) -> Path:
    return workdir / f"{uuid.uuid4().hex[:12]}{suffix}"


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
NAMES = st.one_of(
    st.sampled_from(["a", "b", "c", "conv", "msg.v2", "_x", "a-b"]),
    st.sampled_from(["", "1a", "a b", "a\n", "\na", "a\x00", "é", "a/b", "x" * 129]),
    TEXT,
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
# How a file can be broken below the level of its fields.
RAW_BREAKS: list[tuple[str, bytes]] = [
    ("deep", b"[" * 50_000 + b"]" * 50_000),
    ("long integer", b"1" * 5000),
    ("bom", b"\xef\xbb\xbf"),
    ("bad utf-8", b"\xff\xfe\xed\xa0\x80"),
    ("nan", b"NaN"),
    ("nul", b"\x00"),
]


def broken(draw: st.DrawFn, text: bytes, value_slot: bytes) -> bytes:
    """`text` damaged: truncated, random bytes spliced in, or one value replaced by a raw break."""
    how = draw(st.sampled_from(["truncate", "splice", "value"]))
    if how == "truncate" and text:
        return text[: draw(st.integers(0, len(text) - 1))]
    if how == "splice":
        at = draw(st.integers(0, len(text)))
        return (
            text[:at] + draw(st.binary(max_size=12) | st.sampled_from([b for _, b in RAW_BREAKS])) + text[at:]
        )
    assert value_slot in text
    return text.replace(value_slot, draw(st.sampled_from([b for _, b in RAW_BREAKS])), 1)


def assert_names(err: ConfigError, path: Path, *fields: str) -> None:
    message = str(err)
    assert str(path) in message, message
    for f in fields:
        assert f in message, (f, message)


# -- manifests -----------------------------------------------------------------------------------

STREAM_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "primary_key": st.lists(st.sampled_from(["id", "user", "é x", "a\n"]), min_size=1, max_size=2),
    "cursor_field": st.sampled_from(["updated_at", "t"]),
    "incremental": st.booleans(),
    "semantics": st.sampled_from(["append_only", "mutable_state"]),
    "schema": st.just({"type": "object"}),
    "coverage_strategy": st.sampled_from(["checkpoint_window", "full_inventory", "parent_detail_accounting"]),
}


@st.composite
def manifests(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    """A manifest, and the field made wrong in it (None when it may be fine or broken otherwise)."""
    n = draw(st.integers(1, 5))
    names = draw(st.lists(NAMES, min_size=n, max_size=n))
    streams: list[dict[str, Any]] = []
    for name in names:
        s: dict[str, Any] = {"name": name}
        for f, strat in STREAM_FIELDS.items():
            if f == "primary_key" or draw(st.booleans()):
                s[f] = draw(strat)
        dep = draw(st.sampled_from(["none", "none", "state", "parents", "both"]))
        if dep in ("state", "both"):
            s["state_stream"] = draw(st.sampled_from(names) | NAMES)
        if dep in ("parents", "both"):
            s["parent_streams"] = draw(st.lists(st.sampled_from(names) | NAMES, max_size=3))
        streams.append(s)
    m: dict[str, Any] = {
        "connector_key": draw(st.sampled_from(["gmail", "x.y-1"]) | NAMES),
        "streams": streams,
    }
    if draw(st.booleans()):
        m["capabilities"] = {"refresh_policy": {"max_recovery_attempts": draw(st.integers(-3, 10))}}
    wrong = None
    if draw(st.booleans()):
        # One field of the wrong type: the error must name it.
        i = draw(st.integers(0, len(streams) - 1))
        f = draw(
            st.sampled_from(
                ["name", "primary_key", "incremental", "semantics", "state_stream", "coverage_strategy"]
            )
        )
        bad = draw(VALUES.filter(lambda v: not isinstance(v, str | bool | type(None))))
        if f == "primary_key":
            bad = draw(st.sampled_from([[], [1], "id", {"id": 1}, [None]]))
        streams[i][f] = bad
        wrong = f
    return m, wrong


def independent_check(m: Manifest) -> None:
    """What an accepted manifest guarantees, checked without the code under test."""
    names = [s.name for s in m.streams]
    assert len(set(names)) == len(names)
    for s in m.streams:
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]{0,127}", s.name), s.name
        assert s.primary_key and all(re.fullmatch(r"[^\x00-\x1f\x7f]{1,128}", f) for f in s.primary_key)
        assert not (s.state_stream is not None and s.parent_streams is not None)
        assert len(set(s.parents)) == len(s.parents) and all(p in names and p != s.name for p in s.parents)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}", m.connector_key)
    assert m.capabilities.refresh_policy.max_recovery_attempts >= 0
    graphlib.TopologicalSorter({s.name: s.parents for s in m.streams}).prepare()  # raises on a cycle


@fuzz(300)
@given(case=manifests(), damage=st.sampled_from([False, False, True]), data=st.data())
def test_a_manifest_loads_valid_or_is_a_config_error_naming_file_and_field(
    workdir: Path, case: tuple[dict[str, Any], str | None], damage: bool, data: st.DataObject
) -> None:
    manifest, wrong = case
    text = json.dumps(manifest, ensure_ascii=data.draw(st.booleans())).encode()
    if damage:
        text = broken(data.draw, text, b'"streams"')
        wrong = None
    path = fresh(workdir, ".json")
    path.write_bytes(text)
    try:
        m = load_manifest(path)
    except ConfigError as e:
        assert_names(e, path, *([wrong] if wrong else []))
        return
    assert wrong is None, "a wrong-typed field was accepted"
    independent_check(m)


@pytest.mark.parametrize(("what", "text"), RAW_BREAKS)
def test_a_manifest_that_is_not_json_is_a_config_error(workdir: Path, what: str, text: bytes) -> None:
    path = fresh(workdir, ".json")
    path.write_bytes(
        b'{"connector_key": "x", "streams": [{"name": "a", "primary_key": ["id"], "v": ' + text + b"}]}"
    )
    with pytest.raises(ConfigError) as e:
        load_manifest(path)
    assert_names(e.value, path)


@pytest.mark.parametrize("top", ["[]", "3", '"x"', "null"])
def test_a_manifest_that_is_not_an_object_says_so(workdir: Path, top: str) -> None:
    path = fresh(workdir, ".json")
    path.write_text(top)
    with pytest.raises(ConfigError, match="must be a JSON object") as e:
        load_manifest(path)
    assert_names(e.value, path)


def test_long_dependency_chains_are_checked_without_running_out_of_stack(workdir: Path) -> None:
    n = 3000
    streams = [{"name": "s0", "primary_key": ["id"]}]
    streams += [{"name": f"s{i}", "primary_key": ["id"], "state_stream": f"s{i - 1}"} for i in range(1, n)]
    path = fresh(workdir, ".json")
    path.write_text(json.dumps({"connector_key": "chain", "streams": streams}))
    assert len(load_manifest(path).streams) == n
    streams[0]["state_stream"] = f"s{n - 1}"
    path.write_text(json.dumps({"connector_key": "chain", "streams": streams}))
    with pytest.raises(ConfigError, match="checkpoint dependency cycle: s0 -> s2999 -> s2998") as e:
        load_manifest(path)
    assert_names(e.value, path)


# -- the registry ---------------------------------------------------------------------------------


def toml_string(s: str) -> str:
    # JSON's escapes are TOML's, except that TOML wants DEL escaped too.
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else toml_string(k)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if v != v else "inf" if v == float("inf") else "-inf" if v == -float("inf") else repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return (
            "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items() if x is not None) + "}"
        )
    raise TypeError(v)


def policies(good: bool) -> st.SearchStrategy[dict[str, float]]:
    if good:
        return st.fixed_dictionaries(
            {"base_seconds": st.floats(0.5, 1e5), "cap_seconds": st.floats(1, 1e6)},
            optional={"factor": st.floats(1, 10)},
        )
    seconds = st.floats(0.5, 1e6) | st.sampled_from([0.0, -1.0, float("inf"), float("nan"), 1e300, 1e12])
    return st.fixed_dictionaries(
        {}, optional={"base_seconds": seconds, "factor": st.floats(1, 10) | seconds, "cap_seconds": seconds}
    )


ENV_VALUES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
# Optional fields: right values, and values that may be wrong.
GOOD_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "env": st.dictionaries(st.sampled_from(["A", "B_2"]), ENV_VALUES, max_size=2),
    "pass_env": st.lists(st.sampled_from(["HOME", "X_1"]), max_size=2),
    "checkpoint_policy": st.sampled_from(["commit_proven", "pdpp_strict"]),
    "max_state_bytes": st.integers(1, 2**40),
    "max_line_bytes": st.integers(1, 2**40),
    "cwd": st.sampled_from(["work", "/tmp"]),
    "stall_timeout_seconds": st.floats(1, 1e4),
    "max_run_seconds": st.floats(1, 1e6),
    "retry": st.fixed_dictionaries(
        {}, optional={"transient": policies(True), "provider_pressure": policies(True)}
    ),
    "budget": st.fixed_dictionaries(
        {},
        optional={
            "units": st.integers(0, 10**6),
            "window": st.sampled_from(["24h", "90m", "1h30m", "7d", "365d"]),
            "cost_per_item": st.integers(1, 10),
        },
    ),
}
ANY_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "env": st.dictionaries(st.sampled_from(["A", "B_2", "bad name", "A\n", "=", ""]), TEXT, max_size=2),
    "pass_env": st.lists(st.sampled_from(["HOME", "X_1", "1X", "A\n"]), max_size=2),
    "checkpoint_policy": st.sampled_from(["commit_proven", "pdpp_strict", "yolo"]),
    "max_state_bytes": st.integers(-2, 2**70),
    "max_line_bytes": st.integers(-2, 2**40),
    "cwd": st.sampled_from(["work", "a\x00b", "", "/tmp"]),
    "stall_timeout_seconds": st.floats(allow_nan=True),
    "max_run_seconds": st.floats(allow_nan=True),
    "retry": st.fixed_dictionaries(
        {}, optional={"transient": policies(False), "provider_pressure": policies(False)}
    ),
    "budget": st.fixed_dictionaries(
        {},
        optional={
            "units": st.integers(-1, 10**6),
            "window": st.sampled_from(["24h", "0s", "h", "99999999999d", "366d", "367d", "1e3h"]),
            "cost_per_item": st.integers(0, 10),
        },
    ),
}
CONNECTOR_NAME = r"[A-Za-z][A-Za-z0-9_-]{0,63}"


@st.composite
def registries(draw: st.DrawFn) -> tuple[str, str, set[str], str | None]:
    """TOML text; the connector's name; its fields; the field made wrong (or the top-level key
    added), None when the entry may be fine or wrong anywhere."""
    name = draw(st.sampled_from(["mine", "x_1", "My-conn"]) | NAMES)
    how = draw(st.sampled_from(["fuzzy", "fuzzy", "type", "missing", "extra", "name", "toplevel"]))
    entry: dict[str, Any] = {
        "command": draw(st.sampled_from([["python", "-m", "x"], ["true"], ["x", "-"]])),
        "manifest": draw(st.sampled_from(["m.json", "sub/m.json"])),
    }
    if how == "fuzzy":
        entry["command"] = draw(st.sampled_from([entry["command"], ["a\x00b"], []]))
        entry["manifest"] = draw(st.sampled_from([entry["manifest"], "a\x00b.json", ""]))
    fields = ANY_FIELDS if how == "fuzzy" else GOOD_FIELDS
    for f, strat in fields.items():
        if draw(st.sampled_from([False, False, True])):
            entry[f] = draw(strat)
    wrong: str | None = None
    if how == "type":
        wrong = draw(
            st.sampled_from(["command", "env", "pass_env", "max_state_bytes", "budget", "retry", "cwd"])
        )
        entry[wrong] = draw(st.sampled_from([True, 1.5, "x", [1, 2], {"a": 1}]))
        if (wrong, entry[wrong]) in (("cwd", "x"),):
            del entry[wrong]
            wrong = None
    elif how == "missing":
        wrong = draw(st.sampled_from(["command", "manifest"]))
        del entry[wrong]
    elif how == "extra":
        wrong = draw(st.sampled_from(["commands", "manifests", "timeout"]))
        entry[wrong] = 1
    elif how == "name":
        wrong = "name"
        entry["name"] = draw(st.sampled_from(["other", "", 5]))
    if how != "fuzzy" and not re.fullmatch(CONNECTOR_NAME, name):
        wrong = "name"  # checked first, whatever else is wrong
    lines = []
    if how == "toplevel":
        wrong = draw(st.sampled_from(["title", "connector"]))
        lines.append('title = "mine"' if wrong == "title" else "[connector.typo]\ncommand = []")
    lines.append(f"[connectors.{toml_key(name)}]")
    lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n", name, set(entry), wrong


NOW = datetime(2026, 11, 26, tzinfo=UTC)


@fuzz(300)
@given(case=registries(), damage=st.sampled_from([False, False, False, True]), data=st.data())
def test_a_registry_loads_usable_entries_or_is_a_config_error_naming_file_and_field(
    workdir: Path, case: tuple[str, str, set[str], str | None], damage: bool, data: st.DataObject
) -> None:
    text, name, fields, wrong = case
    raw = text.encode()
    if damage:
        raw = broken(data.draw, raw, b"[connectors.")
    path = fresh(workdir, ".toml")
    path.write_bytes(raw)
    try:
        registry = Registry.load(path)
    except ConfigError as e:
        assert_names(e, path.resolve())
        if damage:
            return
        if wrong in ("title", "connector"):
            assert repr(wrong) in str(e), str(e)
            return
        named = re.search(rf"connectors\.{re.escape(name)}\.(\w+)", str(e))
        assert named and named.group(1) in ({wrong} if wrong else fields | {"name"}), str(e)
        return
    assert damage or wrong is None, f"{wrong} was accepted"
    for key, entry in registry.entries.items():
        # What collect.py, the process spawner and the budget do with an entry must work.
        assert entry.name == key and re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", key)
        assert entry.command and not any("\x00" in a for a in entry.command)
        for k, v in entry.env.items():
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", k) and "\x00" not in v
        assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", k) for k in entry.pass_env)
        for p in (entry.manifest, entry.cwd):
            assert p is None or (p.is_absolute() and "\x00" not in str(p))
        assert entry.line_limit > 0
        NOW + timedelta(seconds=entry.budget.config().window_seconds)
        for cls in (RecoveryClass.PROVIDER_PRESSURE, RecoveryClass.TRANSIENT):
            NOW + entry.retry.delay(cls, 1)
            p = (
                entry.retry.provider_pressure
                if cls is RecoveryClass.PROVIDER_PRESSURE
                else entry.retry.transient
            )
            NOW + timedelta(seconds=p.cap_seconds)


@pytest.mark.parametrize(("what", "text"), RAW_BREAKS)
def test_a_registry_that_is_not_toml_is_a_config_error(workdir: Path, what: str, text: bytes) -> None:
    path = fresh(workdir, ".toml")
    path.write_bytes(
        b'[connectors.x]\ncommand = ["true"]\nmanifest = "m.json"\nmax_state_bytes = ' + text + b"\n"
    )
    with pytest.raises(ConfigError) as e:
        Registry.load(path)
    assert_names(e.value, path.resolve())


def test_a_large_backoff_factor_waits_the_cap() -> None:
    policy = RetryPolicy(transient=ClassPolicy(base_seconds=1, factor=1e300, cap_seconds=60))
    assert policy.delay(RecoveryClass.TRANSIENT, 3) == timedelta(seconds=60)
