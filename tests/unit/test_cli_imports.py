"""A command imports what it uses (pdpp_orch/cli/lazy.py): `records` (PostgreSQL only), its
help and its completion never load Temporal's SDK or aiohttp, which cost every command ≈0.7 s
of start-up when the CLI imported them all. Checked by the modules a real `pdpp-orch` process
holds when it ends, not by timing it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("temporalio", "aiohttp")

# `pdpp-orch ARGS` in this process, saying at its end (its ordinary exit or common.finish's
# os._exit) which of HEAVY it imported.
PROBE = f"""
import os, sys

def loaded():
    return " ".join(m for m in {HEAVY!r} if m in sys.modules)

real_exit = os._exit

def exit_saying(code):
    sys.stderr.write("LOADED:" + loaded() + "\\n")
    sys.stderr.flush()
    real_exit(code)

os._exit = exit_saying
from pdpp_orch.cli import main
sys.argv = ["pdpp-orch", *sys.argv[1:]]
try:
    main()
finally:
    sys.stderr.write("LOADED:" + loaded() + "\\n")
"""


def pdpp(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Exit status, stdout and what of HEAVY `pdpp-orch ARGS` had imported when it ended."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = [line for line in result.stderr.splitlines() if line.startswith("LOADED:")]
    assert said, result.stderr
    return result.returncode, result.stdout, said[0].removeprefix("LOADED:")


def registry(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "connectors.toml"
    path.write_text('[connectors.exotic]\ncommand = ["true"]\nmanifest = "m.json"\n')
    return {"PDPP_CONNECTORS": str(path), "PDPP_DATA_DIR": str(tmp_path)}


def test_records_help_and_completion_import_neither_temporal_nor_aiohttp(tmp_path: Path) -> None:
    code, out, loaded = pdpp("records", "--help")
    assert (code, loaded) == (0, "") and "--format" in out, (code, loaded, out)
    words = "pdpp-orch records ex"
    complete = {"_PDPP_ORCH_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": "2"}
    code, out, loaded = pdpp(env=registry(tmp_path) | complete)
    assert (code, out.split(), loaded) == (0, ["example", "exotic"], "")
    # The probe sees what it should: a command that talks to Temporal loads its SDK.
    assert "temporalio" in pdpp("run", "--help")[2]


def test_records_reads_postgresql_without_importing_temporal(tmp_path: Path, pg_url: str) -> None:
    env = registry(tmp_path) | {"PDPP_DATABASE_URL": pg_url}
    code, _, loaded = pdpp("records", "exotic", "--format", "jsonl", env=env)
    assert (code, loaded) == (0, "")
