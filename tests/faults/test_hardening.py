"""Hardened connector processes (issue 6): what a connector can see, where it runs, how long it
may take, and that nothing it started outlives it."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

from activities.environment import connector_home
from pdpp_orch.manifest import ConfigError
from pdpp_orch.models import InteractionStatus, RunInput, RunStatus
from pdpp_orch.registry import Registry
from tests.conftest import Harness, history_text, outcome_of
from tests.faults.test_faults import _still_alive_after, exact, faulty, pages, rows, start, until
from tests.faults.test_worker_crash import start_worker
from tests.helpers import live

REGISTRY = '[connectors.ok]\ncommand = ["true"]\nmanifest = "m.json"\n'
TOKEN = "tok-5d1c0e-never-to-be-seen"
KEY = "key-8a7f33-never-to-be-seen"


async def test_connector_sees_only_what_its_entry_declares(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PDPP_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("PDPP_TEST_PASSED", "passed through")
    monkeypatch.setenv("PDPP_TEST_NOT_DECLARED", "worker only")
    key_file = harness.tmp / "key.secret"
    key_file.write_text(KEY + "\n")
    dump = harness.tmp / "env.json"
    name = faulty(
        harness,
        [{"env_dump": str(dump)}, {"touch": "scratch.txt"}, pages("a", 20), {"done": "succeeded"}],
        env={"TOKEN": "env:PDPP_TEST_TOKEN", "KEY": f"file:{key_file}", "PLAIN": "plain"},
        pass_env=["PDPP_TEST_PASSED", "PDPP_TEST_UNSET"],
    )
    o = await harness.run(name)
    assert o.status is RunStatus.SUCCEEDED
    seen = json.loads(dump.read_text())
    env, cwd = seen["env"], seen["cwd"]
    declared = {"FAULT_PLAN", "FAULT_START_LOG", "TOKEN", "KEY", "PLAIN", "PDPP_TEST_PASSED"}
    base = {"PATH", "HOME", "LANG", "TZ", "PDPP_CONNECTOR_OWNER"}
    # The keys the reference's runtime gives a run (its connector-child-environment.ts).
    run_keys = {"PDPP_RUN_ID", "PDPP_CONNECTOR_ID", "PDPP_RUN_TRIGGER_KIND", "PDPP_RUN_AUTOMATION_MODE"}
    assert set(env) - {"LC_CTYPE", "LC_ALL"} == {*base, *run_keys, *declared}
    assert [env[k] for k in sorted(run_keys)] == ["abc", "assisted", o.run_id, "manual"]
    assert (env["TOKEN"], env["KEY"], env["PLAIN"]) == (TOKEN, KEY, "plain")
    assert env["PDPP_TEST_PASSED"] == "passed through"
    # Its own working directory, gone after the run; its HOME is its own persistent one.
    assert Path(cwd).name.startswith(f"pdpp-{name}-")
    assert not await asyncio.to_thread(Path(cwd).exists)
    assert env["HOME"] == str(connector_home(harness.data_dir, name))

    # The secrets reached the connector and nothing else: not Temporal's history, not the
    # outcome, not the spine.
    history = history_text(await harness.client.get_workflow_handle(o.run_id).fetch_history())
    spine = json.dumps([e.model_dump() for e in await harness.store.runs.spine_events(o.run_id)])
    row = await harness.store.runs.get(o.run_id)
    run = row.model_dump_json() if row else ""
    for secret in (TOKEN, KEY):
        assert secret not in history and secret not in spine and secret not in run


@pytest.mark.parametrize("ref", ["env:PDPP_TEST_ABSENT", "file:/nonexistent/pdpp-secret"])
async def test_missing_secret_is_a_config_error_naming_connector_and_variable(
    harness: Harness, ref: str
) -> None:
    name = faulty(harness, [pages("a", 5), {"done": "succeeded"}], env={"TOKEN": ref})
    o = await harness.run(name)
    assert o.status is RunStatus.FAILED and o.reason == "configuration_error"
    assert (
        o.error is not None
        and o.error.kind == "config_error"
        and f"connector '{name}': env TOKEN" in (o.error.message or "")
    )
    # Not retried, and the connector never started.
    assert harness.starts(name) == []
    history = history_text(await harness.client.get_workflow_handle(o.run_id).fetch_history())
    assert "ConfigError" in history and f"connector '{name}': env TOKEN" in history
    assert ref.split(":", 1)[1] in history  # where it looked, which is not a secret
    assert "NON_RETRYABLE_FAILURE" in history


async def test_entry_cwd_is_the_working_directory_and_stays(harness: Harness) -> None:
    work = harness.tmp / "work" / "here"
    dump = harness.tmp / "env.json"
    name = faulty(
        harness, [{"env_dump": str(dump)}, {"touch": "kept.txt"}, {"done": "succeeded"}], cwd=str(work)
    )
    o = await harness.run(name)
    assert o.status is RunStatus.SUCCEEDED
    seen = json.loads(dump.read_text())
    assert seen["cwd"] == str(work) and seen["env"]["HOME"] == str(connector_home(harness.data_dir, name))
    assert (work / "kept.txt").exists()


async def test_max_run_seconds_from_the_registry_stops_a_connector_that_never_pauses(
    harness: Harness,
) -> None:
    # Output every few milliseconds: the read loop never times out, the deadline must still hold.
    name = faulty(harness, [pages("a", 1_000_000, every=5, pause=0.005)], max_run_seconds=2)
    began = time.monotonic()
    o = await harness.run(name)
    took = time.monotonic() - began
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.reason == "max_run_duration_exceeded"
    assert 2 <= took < 12
    assert o.records_durable == o.records_emitted == sum((await rows(harness.store, name)).values()) > 0


async def test_cancel_ends_the_connector_and_its_grandchild(harness: Harness) -> None:
    pid_file = harness.tmp / "grandchild.pid"
    name = faulty(harness, [{"grandchild": str(pid_file)}, pages("a", 30), {"hang": True}])
    inp = harness.run_input(name, heartbeat_timeout_seconds=2.0)
    async with harness.worker():
        handle = await start(harness, inp)
        await until(lambda: _durable_at_least(harness, name, 30), "30 records durable")
        await handle.cancel()
        o = await outcome_of(harness.store, handle)
    assert o.status is RunStatus.CANCELLED
    exact(o, 30)
    assert pid_file.exists() and not live(str(pid_file))


async def test_an_exited_connector_s_leftovers_do_not_hold_the_run(harness: Harness) -> None:
    # The grandchild inherits stdout, so EOF never comes while it lives.
    pid_file = harness.tmp / "grandchild.pid"
    name = faulty(harness, [{"grandchild": str(pid_file)}, pages("a", 40), {"done": "succeeded"}])
    began = time.monotonic()
    o = await harness.run(name)
    assert time.monotonic() - began < 15
    assert o.status is RunStatus.SUCCEEDED
    exact(o, 40)
    assert pid_file.exists() and not live(str(pid_file))


async def _durable_at_least(h: Harness, name: str, n: int) -> bool:
    return sum((await rows(h.store, name)).values()) >= n


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('[connectors."bad name"]', "connector name"),
        ('[connectors."x;drop"]', "connector name"),
        ('[connectors.ok]\nenv = { "BAD-KEY" = "v" }', "not an environment variable name"),
        ('[connectors.ok]\nenv = { K = "env:not a name" }', "an environment variable's name"),
        ('[connectors.ok]\npass_env = ["A B"]', "not an environment variable name"),
        ("[connectors.ok]\nstall_timeout_seconds = 0", "greater than 0"),
    ],
)
def test_registry_rejects_unsafe_names(tmp_path: Path, table: str, error: str) -> None:
    reg = tmp_path / "connectors.toml"
    reg.write_text(f'{table}\ncommand = ["true"]\nmanifest = "m.json"\n')
    with pytest.raises(ConfigError, match=error):
        Registry.load(reg)


def test_file_secret_paths_are_relative_to_the_registry(tmp_path: Path) -> None:
    reg = tmp_path / "connectors.toml"
    reg.write_text(
        '[connectors.ok]\ncommand = ["true"]\nmanifest = "m.json"\nenv = { K = "file:secrets/k" }\n'
    )
    assert Registry.load(reg).get("ok").env["K"] == f"file:{tmp_path / 'secrets' / 'k'}"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"connector_key": "a b"}, "invalid connector_key"),
        ({"streams": [{"name": "a;b", "primary_key": ["id"]}]}, "invalid stream name"),
        ({"streams": [{"name": "a", "primary_key": ["i\nd"]}]}, "invalid field name"),
    ],
)
def test_manifest_identifiers_must_be_safe(tmp_path: Path, change: dict[str, object], error: str) -> None:
    from pdpp_orch.manifest import load_manifest

    path = tmp_path / "m.json"
    path.write_text(
        json.dumps({"connector_key": "k", "streams": [{"name": "a", "primary_key": ["id"]}], **change})
    )
    with pytest.raises(ConfigError, match=error):
        load_manifest(path)


def test_pass_env_names_only_what_is_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from activities.environment import connector_env

    reg = tmp_path / "connectors.toml"
    reg.write_text(REGISTRY + 'pass_env = ["PDPP_T_SET", "PDPP_T_UNSET"]\n')
    monkeypatch.setenv("PDPP_T_SET", "1")
    monkeypatch.delenv("PDPP_T_UNSET", raising=False)
    env = connector_env(Registry.load(reg).get("ok"), tmp_path, RunInput(connector="ok", run_id="r"), "ok")
    assert env["PDPP_T_SET"] == "1" and "PDPP_T_UNSET" not in env
    assert env["HOME"] == str(tmp_path) and "PDPP_DATABASE_URL" not in env


async def test_waiting_on_the_owner_is_not_a_stall(harness: Harness) -> None:
    log = harness.tmp / "responses.jsonl"
    ask = {
        "type": "INTERACTION",
        "request_id": "r1",
        "kind": "otp",
        "message": "code?",
        "timeout_seconds": 60,
    }
    name = harness.scripted(
        [{"records": {"stream": "a", "count": 10}}, {"state": "a"}, {"msg": ask}, {"await_response": True},
         {"records": {"stream": "a", "count": 10}}, {"state": "a"}, {"done": "succeeded"}],
        stall_timeout_seconds=1.0,
    )  # fmt: skip
    harness.entries[-1] = harness.entries[-1].replace(
        "env = { ", f'env = {{ SCRIPT_RESPONSE_LOG = "{log}", ', 1
    )
    harness.registry_path.write_text("\n\n".join(harness.entries) + "\n")
    inp = harness.run_input(name)
    async with harness.worker():
        handle = await start(harness, inp)
        await until(lambda: harness.store.interactions.find(inp.run_id), "the interaction")
        await asyncio.sleep(3.0)  # three stall timeouts of silence, all of it waiting on the owner
        assert await harness.store.interactions.answer(
            inp.run_id, "r1", InteractionStatus.SUCCESS, '{"code": "1"}', 600
        )
        o = await handle.result()
    assert o.status is RunStatus.SUCCEEDED, o.reason
    exact(o, 20)


async def test_a_silent_connector_dies_with_its_sigkilled_worker(harness: Harness, pg_url: str) -> None:
    # It writes nothing, so no broken pipe would ever tell it that its worker is gone.
    name = faulty(harness, [pages("a", 10), {"hang": True}])
    inp = harness.run_input(name, heartbeat_timeout_seconds=2.0)
    worker = start_worker(harness, pg_url)
    try:
        await start(harness, inp)
        await until(lambda: _durable_at_least(harness, name, 10), "10 records durable", 60)
        assert live(name)
        worker.send_signal(signal.SIGKILL)
        await asyncio.to_thread(worker.wait)
        assert not await _still_alive_after(name, 2.0)
    finally:
        if worker.poll() is None:
            worker.kill()
        # The run is left to its heartbeat timeout: nothing polls this task queue any more.
        await harness.client.get_workflow_handle(inp.run_id).terminate()
