"""The reference implementation's 44 connector manifests register unchanged, its legacy
spellings normalised as it normalises them, and what it refuses is refused here too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pdpp_orch.manifest import ConfigError, canonical_key, load_manifest
from pdpp_orch.registry import Registry

HERE = Path(__file__).parent
REFERENCE = HERE.parent / "data" / "pdpp_ri_manifests"
MANIFESTS = sorted(REFERENCE.glob("*.json"))


def test_the_directory_holds_the_44_manifests() -> None:
    assert len(MANIFESTS) == 44


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.stem for p in MANIFESTS])
def test_every_reference_manifest_registers(path: Path, tmp_path: Path) -> None:
    raw = json.loads(path.read_text())
    m = load_manifest(path)
    assert m.connector_key == raw["connector_key"]
    assert [s.name for s in m.streams] == [s["name"] for s in raw["streams"]]
    for spec, s in zip(m.streams, raw["streams"], strict=True):
        assert spec.semantics == {"append": "append_only"}.get(
            s.get("semantics"), s.get("semantics", spec.semantics)
        )
    required = [
        b for b, r in (raw.get("runtime_requirements") or {}).get("bindings", {}).items() if r.get("required")
    ]
    assert m.required_bindings == required
    # Registered as a connector, with the default bindings it is runnable.
    reg = tmp_path / "connectors.toml"
    reg.write_text(f'[connectors.ri]\ncommand = ["true"]\nmanifest = {json.dumps(str(path))}\n')
    assert Registry.load(reg).get("ri").load_manifest().connector_key == m.connector_key


def test_the_legacy_append_spelling_is_append_only() -> None:
    appended = {
        (p.stem, s.name)
        for p in MANIFESTS
        for s in load_manifest(p).streams
        if any(
            x.get("semantics") == "append" and x["name"] == s.name
            for x in json.loads(p.read_text())["streams"]
        )
    }
    assert len(appended) == 5
    for stem, name in appended:
        spec = load_manifest(REFERENCE / f"{stem}.json").stream(name)
        assert spec is not None and spec.semantics == "append_only"


def write(tmp_path: Path, **top: Any) -> Path:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"streams": [{"name": "a", "primary_key": ["id"]}], **top}))
    return path


@pytest.mark.parametrize(
    ("identity", "key"),
    [
        ({"connector_id": "https://registry.pdpp.dev/connectors/slack"}, "slack"),
        ({"connector_id": "https://registry.pdpp.dev/connectors/slack/"}, "slack"),
        ({"connector_id": "claude_code"}, "claude-code"),
        ({"connector_id": "gmail"}, "gmail"),
        ({"connector_id": "my-own"}, "my-own"),
        ({"connector_id": "https://registry.pdpp.dev/connectors/ical", "connector_key": "ical"}, "ical"),
        ({"connector_id": "mine", "connector_key": "mine"}, "mine"),
        ({"connector_key": "mine"}, "mine"),
    ],
)
def test_connector_id_names_the_connector_as_in_the_reference(
    tmp_path: Path, identity: dict[str, str], key: str
) -> None:
    assert load_manifest(write(tmp_path, **identity)).connector_key == key


@pytest.mark.parametrize(
    ("top", "message"),
    [
        (
            {"connector_id": "https://registry.pdpp.dev/connectors/slack", "connector_key": "gmail"},
            "must be 'slack'",
        ),
        ({"connector_id": "mine", "connector_key": "yours"}, "must match connector_key"),
        ({"connector_id": "https://example.com/c", "connector_key": "c"}, "must match connector_key"),
        ({"connector_id": "https://registry.pdpp.dev/connectors/nope"}, "no known connector"),
        ({"connector_key": "k", "provider_id": "p"}, "provider_id"),
        ({"connector_key": "k", "storage_binding": {"connector_id": "k"}}, "storage_binding"),
        ({}, "connector_key"),
        ({"connector_key": "k", "runtime_requirements": {"bindings": {"gpu": {}}}}, "bindings.gpu"),
        (
            {"connector_key": "k", "runtime_requirements": {"bindings": {"network": {"required": "yes"}}}},
            "required",
        ),
        ({"connector_key": "k", "runtime_requirements": {"bindings": ["network"]}}, "bindings"),
    ],
)
def test_what_the_reference_refuses_is_refused(tmp_path: Path, top: dict[str, Any], message: str) -> None:
    path = write(tmp_path, **top)
    with pytest.raises(ConfigError, match=message) as e:
        load_manifest(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("semantics", ["appended", "APPEND", "upsert", 1])
def test_other_semantics_stay_refused(tmp_path: Path, semantics: Any) -> None:
    path = tmp_path / "m.json"
    path.write_text(
        json.dumps(
            {"connector_key": "k", "streams": [{"name": "a", "primary_key": ["id"], "semantics": semantics}]}
        )
    )
    with pytest.raises(ConfigError, match=r"streams\.0\.semantics"):
        load_manifest(path)


def test_canonical_keys() -> None:
    assert canonical_key("https://registry.pdpp.dev/connectors/google-maps") == "google-maps"
    assert canonical_key("https://registry.pdpp.dev/connectors/a/b") is None
    assert canonical_key("  codex ") == "codex"
    assert canonical_key("") is None and canonical_key(None) is None


def test_a_required_binding_the_entry_does_not_offer_is_a_config_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        connector_key="k",
        runtime_requirements={"bindings": {"browser": {"required": True}, "network": {"required": False}}},
    )
    reg = tmp_path / "connectors.toml"
    reg.write_text(f'[connectors.k]\ncommand = ["true"]\nmanifest = "{path}"\nbindings = ["network"]\n')
    with pytest.raises(
        ConfigError, match=r"connector 'k' requires the binding\(s\) browser .*bindings = \[network\]"
    ):
        Registry.load(reg).get("k").load_manifest()
    reg.write_text(
        f'[connectors.k]\ncommand = ["true"]\nmanifest = "{path}"\nbindings = ["network", "browser"]\n'
    )
    assert Registry.load(reg).get("k").load_manifest().required_bindings == ["browser"]
    reg.write_text(f'[connectors.k]\ncommand = ["true"]\nmanifest = "{path}"\nbindings = ["gpu"]\n')
    with pytest.raises(ConfigError, match=r"connectors\.k\.bindings"):
        Registry.load(reg)
