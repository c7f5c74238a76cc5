"""Test connectors, and a helper to register the scripted one."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pdpp_orch.registry import toml_value


def grants(writable: Path, *read_only: Path) -> list[dict[str, Any]]:
    """A registry entry's `paths` for a test's sandboxed connector: `writable` (made writable
    for every uid: as root, sandboxed connectors run as uids of their own) and `read_only`."""
    writable.chmod(0o777)
    return [{"path": str(writable), "writable": True}, *({"path": str(p)} for p in read_only)]


def grant(path: Path) -> str:
    """The registry line that lets a test's sandboxed connector see and write `path` (made
    writable for every uid: as root, sandboxed connectors run as uids of their own)."""
    return f"paths = {toml_value(grants(path))}\n"


def append_scripted(registry: Path, name: str, plan: list[dict[str, Any]], work: Path) -> Path:
    """Add a scripted connector (tests/connectors/scripted.py on the abc manifest) playing
    `plan` to a registry file; its INTERACTION answers are logged to WORK/NAME.responses.jsonl."""
    here = Path(__file__).parent
    script = work / f"{name}.plan.json"
    script.write_text(json.dumps(plan))
    env = {"SCRIPT_PLAN": str(script), "SCRIPT_RESPONSE_LOG": str(work / f"{name}.responses.jsonl")}
    with registry.open("a") as f:
        f.write(
            f"\n[connectors.{name}]\ncommand = {json.dumps([sys.executable, str(here / 'scripted.py')])}\n"
            f"manifest = {json.dumps(str(here / 'abc.json'))}\nenv = {toml_value(env)}\n{grant(work)}"
        )
    return registry
