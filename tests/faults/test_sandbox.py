"""Connectors are strangers (issue 26, DESIGN §14): a hostile connector of ours against the
sandbox. Each of its tricks is first shown to work without a sandbox (`sandbox = false`: the
issue's findings, reproduced), then to fail with one."""

from __future__ import annotations

import asyncio
import json
import marshal
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psutil
import pytest

from activities.sandbox.view import system, view
from pdpp_orch.models import RunStatus, SandboxMode
from tests.conftest import ABC_MANIFEST, CONNECTORS, Harness, outcome_of
from tests.faults.test_faults import start
from tests.helpers import cli, cli_env, live

HOSTILE = CONNECTORS / "hostile.py"
LAUNCHER = Path(__file__).parents[2] / "activities" / "sandbox" / "launch.py"
ALLOC_MB, FORKS = 320, 48
EXPECTED_MODE = SandboxMode.UID if os.geteuid() == 0 else SandboxMode.USERNS


def hostile(h: Harness, data_dir: Path, pg_url: str, marker: str, **extra: Any) -> str:
    """Register the hostile connector; its report goes to TMP/NAME.json."""
    name = f"h{uuid.uuid4().hex[:8]}"
    env = {
        "HOSTILE_REPORT": str(h.tmp / f"{name}.json"),
        "HOSTILE_DATA_DIR": str(data_dir),  # where the worker's data is: it knows, even if it cannot find it
        "HOSTILE_PG_SOCKET_DIR": parse_qs(urlsplit(pg_url).query)["host"][0],
        "HOSTILE_MARKER": marker,
        "HOSTILE_ALLOC_MB": str(ALLOC_MB),
        "HOSTILE_FORKS": str(FORKS),
    }
    return h.register(name, [sys.executable, str(HOSTILE)], ABC_MANIFEST, env, **extra)


def worker(h: Harness, pg_url: str, data_dir: Path, *setpriv: str) -> subprocess.Popen[bytes]:
    """`pdpp-orch worker --data-dir D` (so its command line names its data directory), with a
    canary in its environment; what it logs goes to TMP/worker.log."""
    env = cli_env(h, pg_url, HOSTILE_CANARY="worker-only")
    cmd = [*setpriv, sys.executable, "-m", "pdpp_orch.cli", "worker", "--data-dir", str(data_dir)]
    with open(h.tmp / "worker.log", "ab") as log:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)


async def run(h: Harness, name: str) -> Any:
    handle = await start(h, h.run_input(name))
    return await asyncio.wait_for(outcome_of(h.store, handle), 90)


def kill_all(marker: str) -> None:
    for pid in live(marker):
        psutil.Process(pid).kill()


async def test_a_hostile_connector_reaches_nothing_of_the_worker_and_cannot_outlive_its_run(
    harness: Harness, pg_url: str
) -> None:
    data_dir = harness.tmp / "worker-data"
    data_dir.mkdir()
    (data_dir / "devstack.json").write_text(json.dumps({"database_url": pg_url}))
    exposed_marker, boxed_marker = f"escaped-{uuid.uuid4().hex}", f"escaped-{uuid.uuid4().hex}"
    exposed = hostile(harness, data_dir, pg_url, exposed_marker, sandbox=False)
    boxed = hostile(harness, data_dir, pg_url, boxed_marker, limits={"memory_mb": 256, "processes": 32})
    proc = worker(harness, pg_url, data_dir)
    try:
        opened, closed = await run(harness, exposed), await run(harness, boxed)
        before = json.loads((harness.tmp / f"{exposed}.json").read_text())
        after = json.loads((harness.tmp / f"{boxed}.json").read_text())
        escaped_after_its_run = live(exposed_marker)
        code, said, _ = await cli(harness, pg_url, "status", opened.run_id)
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.to_thread(proc.wait, 20)
        kill_all(exposed_marker)
        kill_all(boxed_marker)
    print(f"\nwithout a sandbox: {before}\nwith one: {after}")

    # Without a sandbox, every finding of the issue reproduces ...
    assert before["environ"]["canary"] >= 1 and before["environ"]["database_url"] >= 1
    assert before["cmdline"]["data_dir"] == str(data_dir)
    assert before["devstack"] == {"read": True, "database_url": True}
    assert before["postgres"]["connected"] and before["postgres"]["runs"] >= 1
    assert before["write"]["written"] and (data_dir / "planted-by-a-connector").exists()
    assert escaped_after_its_run, "the setsid grandchild with an empty environment outlived its run"
    assert before["memory"]["allocated"] and before["fork"]["started"] == FORKS
    # ... and every surface says the run had no sandbox.
    assert opened.sandbox is SandboxMode.OFF and code == 0 and "ran without a sandbox" in said

    # With one, it sees nothing of the worker: not its process, environment, command line,
    # data directory or database socket; it writes nothing there; nothing it starts outlives
    # it; and it runs within its limits.
    assert closed.status is RunStatus.SUCCEEDED and closed.sandbox is EXPECTED_MODE
    assert after["environ"]["ppid"] == 1 and after["environ"]["canary"] == 0
    assert after["environ"]["database_url"] == 0
    assert after["cmdline"]["data_dir"] is None
    assert after["devstack"]["read"] is False
    assert after["postgres"]["connected"] is False
    assert after["write"]["written"] is False
    assert after["escape"]["started"] and live(boxed_marker) == []
    assert after["memory"]["allocated"] is False
    assert 0 < after["fork"]["started"] < 32


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
async def test_a_worker_that_cannot_make_a_sandbox_refuses_and_says_why_and_what_next(
    harness: Harness, pg_url: str
) -> None:
    # Root without CAP_SYS_ADMIN (a container's root, say) cannot make namespaces.
    data_dir = harness.tmp / "worker-data"
    name = hostile(harness, data_dir, pg_url, f"never-{uuid.uuid4().hex}")
    proc = worker(harness, pg_url, data_dir, "setpriv", "--bounding-set=-sys_admin", "--inh-caps=-all", "--")
    try:
        o = await run(harness, name)
        code, said, _ = await cli(harness, pg_url, "status", o.run_id)
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.to_thread(proc.wait, 20)
    assert o.status is RunStatus.FAILED and o.reason == "configuration_error"
    assert o.error is not None and (o.error.message or "").startswith("sandbox_unavailable: ")
    assert harness.starts(name) == [] and not (harness.tmp / f"{name}.json").exists()
    assert code == 1  # the run failed
    assert f"why: config_error: sandbox_unavailable: '{name}' cannot be isolated here (unshare: " in said
    assert "sandbox = false in its entry, or PDPP_SANDBOX=off" in said
    assert "fix the cause above, then `pdpp-orch run" in said
    logged = (harness.tmp / "worker.log").read_text()  # and the worker said so as it started
    assert (
        "connectors cannot be sandboxed on this worker (sandbox: unshare: Operation not permitted)" in logged
    )


PROBE = """
import json, os
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print(json.dumps({
    "uid": os.getuid(), "ppid": os.getppid(), "pids": pids,
    "caps": status["CapEff"].strip(), "no_new_privs": status["NoNewPrivs"].strip(),
    "secret": open(os.environ["PROBE_SECRET"]).read(), "root": os.path.exists("/root"),
    "beside": os.path.exists(os.environ["PROBE_BESIDE"]),
}))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_the_sandbox_of_a_worker_that_is_not_root_is_a_user_namespace(tmp_path: Path) -> None:
    """As an unprivileged user (nobody, through setpriv): the launcher makes a user namespace,
    the connector keeps that uid without a capability, sees only its own PID namespace, and
    neither a hidden file nor what is outside its view."""
    python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None)
    if python is None:
        pytest.skip("no system python3 that an unprivileged user can run")
    work = tmp_path / "work"
    work.mkdir()
    secret = work / "secret"
    secret.write_text("s")
    (tmp_path / "beside").write_text("not in its view")
    for p in (tmp_path, work, secret):
        os.chown(p, 65534, 65534)
    probe = work / "probe.py"
    probe.write_text(PROBE)
    steps = view([*system(), Path(python)], [work], [secret])
    spec = {
        "argv": [python, str(probe)], "cwd": str(work), "uid": None, "userns": True,
        "tmp_bytes": 1 << 20, "limits": {"RLIMIT_CORE": 0}, "ops": steps,
    }  # fmt: skip
    spec_r, spec_w = os.pipe()
    os.write(spec_w, marshal.dumps(spec))
    os.close(spec_w)
    err_r, err_w = os.pipe()
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-I", "-S", str(LAUNCHER)]
    done = subprocess.run(
        [*cmd, str(spec_r), str(err_w)], pass_fds=(spec_r, err_w), capture_output=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", "PROBE_SECRET": str(secret), "PROBE_BESIDE": str(tmp_path / "beside")},
    )  # fmt: skip
    os.close(err_w)
    failure = os.read(err_r, 4096).decode()
    if failure.startswith("sandbox: unshare"):
        pytest.skip(f"user namespaces are not allowed here: {failure}")  # the refusal, said clearly
    assert done.returncode == 0 and failure == "", (failure, done.stderr)
    seen = json.loads(done.stdout)
    assert seen["uid"] == 65534 and seen["ppid"] == 1 and seen["pids"] == [1, 2]
    assert seen["caps"] == "0000000000000000" and seen["no_new_privs"] == "1"
    assert seen["secret"] == "" and seen["root"] is False and seen["beside"] is False
