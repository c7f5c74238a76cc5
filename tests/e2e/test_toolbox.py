"""The toolbox as people use it, against the real servers: the newcomer's path of the README
(`connectors new`, `connectors check`, `run`, `records`, `logs`, completion) touching nothing
else; reading records back in every format with tombstones; a run's logs per attempt, bounded,
and followed while it runs."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from pathlib import Path

from pdpp_orch.store.logs import LogCursor
from tests.conftest import ROOT, Harness
from tests.helpers import cli, cli_env

PDPP_ORCH = str(Path(sys.executable).parent / "pdpp-orch")


async def newcomer(h: Harness, pg_url: str, *args: str, **env: str) -> tuple[int, str, str]:
    """`pdpp-orch ARGS` typed in the test's directory, with only the stack's address set: the
    registry is ./connectors.toml, as in the README."""
    environ = {k: v for k, v in cli_env(h, pg_url, **env).items() if k != "PDPP_CONNECTORS"}
    proc = await asyncio.create_subprocess_exec(
        PDPP_ORCH, *args, env={**environ, "COLUMNS": "200"}, cwd=h.tmp, stdout=-1, stderr=-1
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def readme_path() -> list[list[str]]:
    """The commands of the README's *Your first connector*, as typed."""
    text = (ROOT / "README.md").read_text(encoding="utf-8").split("### Your first connector")[1]
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.strip()]


async def test_the_newcomer_path_of_the_readme(harness: Harness, pg_url: str) -> None:
    """Exactly the README's commands, in a directory of their own: nothing else is touched."""
    assert harness.registry_path == harness.tmp / "connectors.toml"  # what the worker reads
    said: dict[str, str] = {}
    run_id = ""
    async with harness.worker():
        for command in readme_path():
            assert command[0] == "pdpp-orch"
            args = [run_id if a == "RUN_ID" else a for a in command[1:]]
            code, out, err = await newcomer(harness, pg_url, *args)
            assert code == 0, (command, out, err)
            said[" ".join(command[1:3])] = out
            if command[1] == "run":
                run_id = err.split("started run ")[1].split(";")[0].split()[0]
    assert list(said) == ["connectors new", "connectors check", "run notes", "records notes", "logs RUN_ID"]
    assert "registered notes in connectors.toml" in said["connectors new"]
    assert "nothing would stop a run" in said["connectors check"]
    assert said["run notes"].startswith("succeeded") and "skipped: archived 1" in said["run notes"]
    header, *rows = said["records notes"].splitlines()
    assert header.split() == ["stream", "key", "when", "data", "(or", "deleted)"]
    assert [r.split()[:2] for r in rows] == [["items", k] for k in ("n1", "n2", "n4", "n5")]
    for line in [
        "run started (manual, forward)",
        "attempt 1 started",
        "stderr [1] 5 item(s) after the start",
        "4 records made durable (1 batch",
        "attempt 1 ended: DONE succeeded, exit code 0, 4 records durable",
        "checkpoint committed: items",
        "skipped in items: archived × 1",
        "run ended: succeeded · 4 records durable · checkpoints 1/1",
    ]:
        assert line in said["logs RUN_ID"], said["logs RUN_ID"]
    # What a program reads, and the shell completing the run id.
    completion = {"_PDPP_ORCH_COMPLETE": "complete_bash", "COMP_WORDS": "pdpp-orch logs notes-"}
    jsonl, completed = await asyncio.gather(
        newcomer(harness, pg_url, "records", "notes", "--format", "jsonl", "--key", "n2"),
        newcomer(harness, pg_url, **completion, COMP_CWORD="2"),
    )
    [n2] = [json.loads(line) for line in jsonl[1].splitlines()]
    assert (n2["stream"], n2["deleted"], n2["run_id"], n2["data"]["title"]) == (
        "items",
        False,
        run_id,
        "Call the plumber",
    )
    assert (completed[0], completed[1].split(), completed[2]) == (0, [run_id], "")


async def test_records_in_every_format_with_tombstones(harness: Harness, pg_url: str) -> None:
    delete = {
        "type": "RECORD",
        "stream": "a",
        "key": "a-000001",
        "op": "delete",
        "emitted_at": "2026-12-04T00:00:00Z",
    }
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 3}},
            {"records": {"stream": "b", "count": 2}},
            {"msg": delete},
            {"state": "a"},
            {"done": "succeeded"},
        ]
    )
    async with harness.worker():
        code, _, err = await cli(harness, pg_url, "run", name, "--wait")
        assert code == 0, err

    async def records(*args: str) -> tuple[int, str, str]:
        return await cli(harness, pg_url, "records", name, *args, COLUMNS="200")

    # Read-only, so all at once (each is a process of its own).
    jsonl, as_json, table, csv, later, bad = await asyncio.gather(
        records("--format", "jsonl"),
        records("--format", "json"),
        records("--stream", "a"),
        records("--format", "csv", "--stream", "a", "--limit", "2"),
        records("--since", "2999-01-01"),
        records("--since", "soon"),
    )
    lines = [json.loads(x) for x in jsonl[1].splitlines()]
    assert [(r["stream"], r["key"], r["deleted"]) for r in lines] == [
        ("a", "a-000000", False),
        ("a", "a-000001", True),
        ("a", "a-000002", False),
        ("b", "b-000000", False),
        ("b", "b-000001", False),
    ]
    tombstone = lines[1]
    assert set(tombstone) == {"stream", "key", "deleted", "deleted_at", "run_id"}  # no data
    assert lines[0]["data"] == {"id": "a-000000", "n": 0, "text": "item 0 of a"}
    assert json.loads(as_json[1]) == lines
    header, *rows = table[1].splitlines()
    assert header == "stream  key  when  data (or deleted)"  # its columns named, once
    assert [r.split()[1] for r in rows] == ["a-000000", "a-000001", "a-000002"]
    assert rows[1].endswith("deleted") and "item 0 of a" in rows[0]
    assert rows[0].split("  ")[2].endswith(" UTC")  # when, as every command shows a time
    header, first, deleted = csv[1].splitlines()
    assert header == "stream,key,deleted,updated_at,run_id,data" and first.startswith("a,a-000000,false,")
    assert deleted.startswith("a,a-000001,true,") and deleted.endswith(",")  # a tombstone's data is empty
    assert later[:2] == (0, "") and f"no record matches; {name} holds a (3), b (2)" in later[2]
    assert bad[0] == 2 and "not an ISO time" in bad[2]


async def test_records_into_a_pipe_its_reader_closes_is_no_failure(harness: Harness, pg_url: str) -> None:
    """`pdpp-orch records X | head`: the reader has what it wanted, the command exits 0 (with
    `set -o pipefail` a script goes on), in a table as in JSON lines."""
    name = harness.scripted([{"records": {"stream": "a", "count": 3000}}, {"done": "succeeded"}])
    assert (await harness.run(name)).records_durable == 3000
    command = f"{sys.executable} -m pdpp_orch.cli records {name} --limit 3000"

    async def piped(*args: str) -> tuple[int | None, bytes, bytes]:
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", f"set -o pipefail; {command} {' '.join(args)} | head -1",
            env=cli_env(harness, pg_url), stdout=-1, stderr=-1,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode, out, err

    for fmt in ("table", "jsonl"):
        code, out, err = await piped("--format", fmt)
        assert (code, err) == (0, b""), (fmt, code, err)
        assert out.count(b"\n") == 1, (fmt, out)


async def test_logs_follow_a_run_and_keep_each_attempts_stderr_bounded(harness: Harness, pg_url: str) -> None:
    release = harness.tmp / "release"
    name = harness.scripted(
        [
            {"stderr": "starting"},
            {"records": {"stream": "a", "count": 2}},
            {"raw": "not json"},
            {"wait_for": str(release)},
            {"stderr": "released"},
            {"state": "a"},
            {"done": "succeeded"},
        ]
    )
    async with harness.worker():
        code, out, err = await cli(harness, pg_url, "run", name, "--json")
        assert code == 0, err
        run_id = json.loads(out)["run_id"]
        follow = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pdpp_orch.cli",
            "logs",
            run_id,
            "--follow",
            env={**cli_env(harness, pg_url), "COLUMNS": "200"},
            stdout=asyncio.subprocess.PIPE,
        )
        assert follow.stdout is not None
        seen: list[str] = []

        async def printed(text: str) -> bool:
            while not any(text in line for line in seen):
                seen.append((await follow.stdout.readline()).decode())  # type: ignore[union-attr]
            return True

        # It prints while the run goes on, and returns once the run has ended.
        await asyncio.wait_for(printed("stderr [1] starting"), 30)
        await asyncio.wait_for(printed("quarantined [1] line 3: invalid_json"), 30)
        release.touch()
        await asyncio.wait_for(printed("run ended: partially_completed"), 30)
        assert await asyncio.wait_for(follow.wait(), 30) == 0
    text = "".join(seen)
    assert text.index("stderr [1] starting") < text.index("stderr [1] released") < text.index("run ended")

    # Each attempt keeps its last 400 lines; --attempt shows one attempt's.
    await harness.store.runs.begin_attempt(run_id, 2)
    await harness.store.logs.append_stderr(run_id, 2, 1, [f"second {i}" for i in range(1, 451)])
    kept = await harness.store.logs.read(run_id, LogCursor())
    lines = [e for e in kept.entries if e.kind == "stderr"]
    assert [(e.attempt, e.line_no) for e in lines[:2]] == [(1, 1), (1, 2)]
    assert [e.line_no for e in lines if e.attempt == 2] == list(range(51, 451))
    code, out, _ = await cli(harness, pg_url, "logs", run_id, "--attempt", "2", COLUMNS="200")
    assert code == 0 and "stderr [1]" not in out and "stderr [2] second 450" in out
    assert "stderr [2] second 50\n" not in out and "stderr [2] second 51\n" in out
    assert "attempt 2 started (a retry)" in out
