"""`connectors new|check|list` as an operator uses them, without a stack: a new connector in each
language, registered without clobbering anything, whose own tests pass; everything that would
stop a run found by `check` (exit 2, as `run`), secrets resolved and never printed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pdpp_orch.cli import app
from pdpp_orch.registry import Registry

SECRET = "s3cr3t-value-never-shown"


def cli(*args: str) -> tuple[int, str]:
    """`pdpp-orch ARGS` in-process, with the registry of the current directory."""
    env: dict[str, str | None] = {"COLUMNS": "200", "PDPP_CONNECTORS": None}
    result = CliRunner().invoke(app, list(args), env=env, prog_name="pdpp-orch")
    return result.exit_code, result.output


def test_new_writes_runnable_connectors_and_never_clobbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = cli("connectors", "new", "notes")
    assert code == 0, out
    assert "registered notes in connectors.toml" in out and "pdpp-orch run notes --wait" in out
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == [
        "connector.py",
        "items.jsonl",
        "manifest.json",
        "test_notes.py",
    ]
    first = (tmp_path / "connectors.toml").read_text()
    assert cli("connectors", "new", "sh-notes", "--lang", "shell")[0] == 0
    assert cli("connectors", "new", "js_notes", "--lang", "node")[0] == 0
    registry = (tmp_path / "connectors.toml").read_text()
    assert registry.startswith(first)  # appended, never rewritten
    entries = Registry.load(tmp_path / "connectors.toml").entries
    assert {"notes", "sh-notes", "js_notes"} <= set(entries)
    assert entries["notes"].reasons == {"archived": "informational"}
    # Nothing that exists is overwritten.
    for args, why in [
        (("notes", "--dir", "elsewhere"), "already has a connector 'notes'"),
        (("other", "--dir", "notes"), "is not empty"),
        (("example",), "is a bundled connector"),
        (("9lives",), "is not a connector name"),
    ]:
        code, out = cli("connectors", "new", *args)
        assert code == 2 and why in out, out
    assert (tmp_path / "connectors.toml").read_text() == registry
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "9lives").exists()
    # Their own tests (START in, lines out, each line checked by the orchestrator's decoder).
    dirs = [str(tmp_path / d) for d in ("notes", "sh-notes", "js_notes")]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *dirs],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        # A pytest of its own: not the options of the one running this test (its --basetemp).
        env={k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The node connector's own tests skip themselves where there is no node.
    assert ("9 passed" if shutil.which("node") else "6 passed, 3 skipped") in result.stdout, result.stdout


def test_check_finds_what_would_stop_a_run_and_never_prints_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli("connectors", "new", "notes")[0] == 0
    (tmp_path / "token").write_text(SECRET + "\n")
    monkeypatch.setenv("NOTES_TOKEN", SECRET)
    with (tmp_path / "connectors.toml").open("a") as f:
        f.write('\n[connectors.notes.budget]\nunits = 500\nwindow = "1h"\n')
    registry = (tmp_path / "connectors.toml").read_text()
    good = registry.replace(
        "env = { ITEMS_FILE",
        'pass_env = ["NOT_SET_HERE"]\nenv = { TOKEN = "env:NOTES_TOKEN", KEY = "file:token", ITEMS_FILE',
    )
    (tmp_path / "connectors.toml").write_text(good)
    code, out = cli("connectors", "check", "notes")
    assert code == 0, out
    assert "env TOKEN: env:NOTES_TOKEN resolves (24 characters, not shown)" in out
    assert "nothing would stop a run" in out and "NOT_SET_HERE" in out and SECRET not in out

    (tmp_path / "notes" / "manifest.json").write_text(
        json.dumps({"connector_key": "notes", "streams": [{"name": "items", "primary_key": ["id"]}],
                    "runtime_requirements": {"bindings": {"browser": {"required": True}}}})
    )  # fmt: skip
    bad = good.replace(
        'env = { TOKEN = "env:NOTES_TOKEN"', 'bindings = ["network"]\nenv = { TOKEN = "env:NOPE"'
    )
    bad = bad.replace("notes/connector.py", "notes/missing.py").replace(
        'KEY = "file:token"', 'KEY = "file:gone"'
    )
    (tmp_path / "connectors.toml").write_text(bad + '\n[connectors.notes2]\ncommand = ["no-such-program"]\n'
                                              'manifest = "nope.json"\ncwd = "token/sub"\n')  # fmt: skip
    code, out = cli("connectors", "check", "notes")
    assert code == 2, out
    for problem in [
        "problem  bindings: connector 'notes' requires the binding(s) browser",
        "problem  script: " + str(tmp_path / "notes" / "missing.py") + ": no such file",
        "problem  env TOKEN: connector 'notes': env TOKEN: the worker's environment has no NOPE",
        "problem  env KEY: connector 'notes': env KEY: secret file "
        + str(tmp_path / "gone")
        + " cannot be read",
        "4 problem(s) would stop a run of notes",
    ]:
        assert problem in out, out
    code, out = cli("connectors", "check", "notes2", "--json")
    found = {f["what"]: f["verdict"] for f in json.loads(out)}
    assert code == 2 and found["manifest"] == found["command"] == found["cwd"] == "problem", out
    assert cli("connectors", "check", "nobody")[0] == 2

    code, out = cli("connectors", "list")
    assert code == 0
    assert "connectors.toml" in out and "bundled" in out and "500 per 1h" in out
    assert "manifest invalid" in out and "pdpp-orchestrator (the workers' queue)" in out
    code, out = cli("connectors", "list", "--json")
    notes = next(r for r in json.loads(out) if r["name"] == "notes")
    assert notes["source"] == str(tmp_path / "connectors.toml") and notes["streams"] == ["items"]
    # Every setting of the entry; an inline env value by its length only, references as written.
    assert notes["settings"]["budget"]["units"] == 500 and notes["settings"]["stall_timeout_seconds"] == 600
    assert notes["settings"]["env"]["TOKEN"] == "env:NOPE" and SECRET not in out
    assert os.environ["NOTES_TOKEN"] == SECRET
