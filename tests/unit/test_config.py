"""Manifests and the registry are checked before anything runs, with errors that name the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pdpp_orch.manifest import ConfigError, load_manifest
from pdpp_orch.registry import Registry


def manifest(tmp_path: Path, streams: list[dict[str, Any]]) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"connector_key": "t", "streams": streams}))
    return path


def s(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "primary_key": ["id"], **kw}


@pytest.mark.parametrize(
    ("streams", "message"),
    [
        (
            [s("a", state_stream="c"), s("b", state_stream="a"), s("c", state_stream="b")],
            "cycle: a -> c -> b -> a",
        ),
        ([s("a", parent_streams=["b"]), s("b", state_stream="a")], "cycle"),
        ([s("a", state_stream="a")], "depends on itself"),
        ([s("a", state_stream="nope")], "unknown parent stream 'nope'"),
        ([s("a"), s("b", parent_streams=["a", "a"])], "duplicate parent"),
        ([s("a"), s("b", state_stream="a", parent_streams=["a"])], "both state_stream and parent_streams"),
        ([s("a"), s("b", parent_streams=[])], "parent_streams is empty"),
        ([s("a"), s("a")], "duplicate stream names"),
        ([s("bad name!")], "invalid stream name"),
        ([{"name": "a", "primary_key": []}], "streams.0.primary_key"),
    ],
)
def test_bad_manifests_are_rejected_with_a_clear_error(
    tmp_path: Path, streams: list[dict[str, Any]], message: str
) -> None:
    path = manifest(tmp_path, streams)
    with pytest.raises(ConfigError) as e:
        load_manifest(path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_a_good_dependency_graph_loads(tmp_path: Path) -> None:
    m = load_manifest(
        manifest(
            tmp_path, [s("conv"), s("msg", state_stream="conv"), s("att", parent_streams=["conv", "msg"])]
        )
    )
    assert [c.name for c in m.children_of("conv")] == ["msg", "att"]


def test_registry_errors_name_the_file_and_field(tmp_path: Path) -> None:
    reg = tmp_path / "connectors.toml"
    reg.write_text('[connectors.x]\ncommand = "not-a-list"\nmanifest = "m.json"\n')
    with pytest.raises(ConfigError, match=r"connectors.toml: connectors.x.command"):
        Registry.load(reg)
    reg.write_text('[connectors.x]\ncommand = ["true"]\nmanifest = "m.json"\ncheckpoint_policy = "yolo"\n')
    with pytest.raises(ConfigError, match=r"connectors.x.checkpoint_policy"):
        Registry.load(reg)
    reg.write_text("[connectors.x\n")
    with pytest.raises(ConfigError, match=r"not a readable TOML file"):
        Registry.load(reg)


def test_registry_paths_are_relative_to_the_file_and_bundled_connectors_are_present(tmp_path: Path) -> None:
    reg = tmp_path / "connectors.toml"
    reg.write_text('[connectors.x]\ncommand = ["python", "x.py"]\nmanifest = "sub/m.json"\n')
    r = Registry.load(reg)
    assert r.get("x").manifest == (tmp_path / "sub" / "m.json").resolve()
    assert r.get("x").command[0] == sys.executable
    assert "example" in r.entries
    with pytest.raises(ConfigError, match="unknown connector 'nope'"):
        r.get("nope")


def test_cli_rejects_a_cyclic_manifest_before_spawning_anything(tmp_path: Path) -> None:
    marker = tmp_path / "spawned"
    path = manifest(tmp_path, [s("a", state_stream="c"), s("b", state_stream="a"), s("c", state_stream="b")])
    reg = tmp_path / "connectors.toml"
    reg.write_text(
        f'[connectors.cyclic]\ncommand = ["sh", "-c", "touch {marker}"]\nmanifest = "{path.name}"\n'
    )
    env = {**os.environ, "PDPP_CONNECTORS": str(reg), "PDPP_DATA_DIR": str(tmp_path / "nothing-running")}
    env.pop("TEMPORAL_ADDRESS", None)
    env.pop("PDPP_DATABASE_URL", None)
    r = subprocess.run(
        [sys.executable, "-m", "pdpp_orch.cli", "run", "cyclic", "--wait"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "checkpoint dependency cycle: a -> c -> b -> a" in r.stderr
    assert not marker.exists()


def test_connector_reasons_map_to_recovery_classes(tmp_path: Path) -> None:
    reg = tmp_path / "connectors.toml"
    base = '[connectors.ical]\ncommand = ["true"]\nmanifest = "m.json"\n[connectors.ical.reasons]\n'
    reg.write_text(base + 'no_calendar_sources = "informational"\nics_fetch_failed = "transient"\n')
    assert {k: v.value for k, v in Registry.load(reg).get("ical").reasons.items()} == {
        "no_calendar_sources": "informational",
        "ics_fetch_failed": "transient",
    }
    reg.write_text(base + 'no_calendar_sources = "fine"\n')
    with pytest.raises(ConfigError, match=r"connectors\.ical\.reasons\.no_calendar_sources"):
        Registry.load(reg)


def test_a_table_without_a_command_adds_to_the_bundled_connector_of_its_name(tmp_path: Path) -> None:
    reg = tmp_path / "connectors.toml"
    reg.write_text('[connectors.claude_code]\ntask_queue = "laptop"\nplacement_timeout_seconds = 90\n')
    (tmp_path / "empty.toml").write_text("")
    entry = Registry.load(reg).get("claude_code")
    bundled = Registry.load(tmp_path / "empty.toml").get("claude_code")
    assert (entry.task_queue, entry.placement_timeout_seconds) == ("laptop", 90.0)
    assert (entry.command, entry.manifest, entry.pass_env) == (
        bundled.command,
        bundled.manifest,
        bundled.pass_env,
    )
    assert bundled.task_queue is None and bundled.placement_timeout_seconds == 3600.0
    # A new connector still needs its command and manifest; a queue name is checked.
    reg.write_text('[connectors.mine]\ntask_queue = "laptop"\n')
    with pytest.raises(ConfigError, match=r"connectors\.mine\.command"):
        Registry.load(reg)
    reg.write_text('[connectors.claude_code]\ntask_queue = "my laptop"\n')
    with pytest.raises(ConfigError, match=r"connectors\.claude_code\.task_queue"):
        Registry.load(reg)
    reg.write_text("[connectors.claude_code]\nplacement_timeout_seconds = 0\n")
    with pytest.raises(ConfigError, match="placement_timeout_seconds"):
        Registry.load(reg)
