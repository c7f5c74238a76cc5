"""Safe to print (issue 26 item 3): a hostile connector puts terminal escapes in every word it
can — its stderr, a quarantined line, a record's key, a skip reason, a gap's error, an owner
notice, an interaction's prompt, its DONE error — and every command that shows a connector's
words is run on them: none emits an ESC, BEL, OSC or CSI, each shows them as text."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import typer.main

from pdpp_orch.cli import app
from pdpp_orch.cli.lazy import every_command
from tests.conftest import Harness, until
from tests.helpers import cli

# Set the window title, clear the screen, a C1 CSI, a bidi override, a Markdown link, HTML.
ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202e"
HOSTILE = f"{ESCAPES}<script>x</script>[sign in again here](https://evil.example)"
SHOWN = "\\u001b]0;pwned\\u0007"  # how it is printed instead
ACTIVE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

# Commands that never print a connector's words (ids, names, counts, timings, their own logs),
# and those that do, run below. A new command must be put in one or the other.
NO_CONNECTOR_WORDS = {
    "dev", "worker", "migrate", "health", "demo", "upstream", "keygen", "codec-server", "budget", "erase",
    "gaps requeue", "recover now", "recover cancel", "schedule create", "schedule update",
    "schedule list", "schedule describe", "schedule pause", "schedule unpause", "schedule trigger",
    "schedule delete", "deployment show", "deployment set-current", "deployment ramp", "deployment rollback",
    "connectors list", "connectors check", "connectors new",
}  # fmt: skip
SHOWS_CONNECTOR_WORDS = {
    "run", "respond", "watch", "cancel", "status", "runs", "quarantine", "gaps list", "recover show",
    "report", "logs", "records",
}  # fmt: skip


def commands() -> set[str]:
    def walk(c: object, prefix: str) -> list[str]:
        if not hasattr(c, "commands"):
            return [prefix.strip()]
        return [name for n, sub in every_command(c).items() for name in walk(sub, f"{prefix}{n} ")]

    return set(walk(typer.main.get_command(app), ""))


def hostile_plan(tmp: Path) -> list[dict[str, object]]:
    gap = {"type": "DETAIL_GAP", "stream": "a", "record_key": "k1", "reason": HOSTILE, "last_error": HOSTILE}
    notice = {"owner_action": "act_elsewhere", "progress_posture": "running", "response_contract": "none"}
    return [
        {"stderr": f"boom {HOSTILE}"},
        {"records": {"stream": "a", "count": 3}},
        {
            "msg": {
                "type": "RECORD",
                "stream": "a",
                "key": HOSTILE,
                "data": {"id": HOSTILE, "v": HOSTILE},
                "emitted_at": "2026-12-04T00:00:00Z",
            }
        },
        {"raw": f"not json {HOSTILE}"},
        {"msg": gap},
        {"msg": {"type": "SKIP_RESULT", "stream": "b", "reason": HOSTILE, "message": HOSTILE}},
        {"msg": {"type": "ASSISTANCE", "message": HOSTILE, **notice}},
        {"msg": {"type": "INTERACTION", "request_id": "r1", "kind": "otp", "message": HOSTILE}},
        {"await_response": True},
        {"state": "a"},
        {"stderr": f"last words {HOSTILE}"},
        {"done": "failed", "error": {"code": "upstream_failed", "message": HOSTILE}},
    ]


async def test_no_command_emits_a_connector_s_control_characters(harness: Harness, pg_url: str) -> None:
    assert commands() == NO_CONNECTOR_WORDS | SHOWS_CONNECTOR_WORDS, "new command: which set is it in?"
    env = {"SCRIPT_RESPONSE_LOG": str(harness.tmp / "responses.jsonl")}
    name = harness.scripted(hostile_plan(harness.tmp), env=env)
    said: dict[str, tuple[int, str, str]] = {}
    async with harness.worker():
        run = asyncio.create_task(cli(harness, pg_url, "run", name, "--wait"))

        async def waiting() -> str | None:
            return await harness.store.pool.fetchval(
                "SELECT run_id FROM interactions WHERE connector = $1 AND status = 'pending'", name
            )

        run_id = await until(waiting, "the connector's interaction", 60)
        said["respond"] = await cli(harness, pg_url, "respond", run_id, "--data", '{"code": "1"}')
        said["run"] = await asyncio.wait_for(run, 60)
        html = harness.tmp / "report.html"
        runs = [
            ("status", run_id),
            ("status", run_id, "--json"),
            ("watch", run_id),
            ("cancel", run_id, "--wait"),
            ("runs", "--connector", name),
            ("quarantine", run_id),
            ("quarantine", run_id, "--json"),
            ("gaps", "list", name),
            ("recover", "show", name),
            ("report", name),
            ("report", name, "--html", str(html)),
            ("logs", run_id),
            ("records", name),
            ("records", name, "--format", "csv"),
        ]
        results = await asyncio.gather(*(cli(harness, pg_url, *args) for args in runs))
    said |= {" ".join(args): result for args, result in zip(runs, results, strict=True)}
    # An export to a pipe or a file is the owner's data exactly (on a terminal it is made visible:
    # tests/unit/test_inert.py); the table form of `records` is checked below with the rest.
    code, exported, _ = said.pop(f"records {name} --format csv")
    assert code == 0 and HOSTILE in exported
    groups = ("gaps", "recover", "schedule", "connectors", "deployment")
    run_here = {" ".join(a[:2]) if a[0] in groups else a[0] for a in [("run",), ("respond",), *runs]}
    assert run_here == SHOWS_CONNECTOR_WORDS  # each command that shows a connector's words is run
    for command, (code, out, err) in said.items():
        # (A cancel of the run, ended by then, is refused with 2: it says how the run ended.)
        assert code in ((2,) if command.startswith("cancel") else (0, 1, 3)), (command, code, err)
        assert not ACTIVE.search(out.replace("\n", "").replace("\t", "")), (command, out)
        assert not ACTIVE.search(err.replace("\n", "").replace("\t", "")), (command, err)
        if command.endswith("--json"):
            json.loads(out)
    for command in ("run", f"status {run_id}", f"quarantine {run_id}"):
        assert SHOWN in said[command][1], (command, said[command][1])  # shown, as text
    page = html.read_text()
    assert not ACTIVE.search(page.replace("\n", "")) and "<script" not in page and "&lt;script" in page
