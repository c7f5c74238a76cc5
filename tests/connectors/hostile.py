"""A hostile connector (issue 26): it tries, one trick at a time, to reach what is the worker's,
to outlive its run and to exhaust the machine, and writes what it got to HOSTILE_REPORT (a
JSON object: each trick's name to what it found — never a secret's value). Then DONE.

Tricks (all of them, in this order):
  environ     every /proc/PID/environ it can read (its parent's first), looking for the
              worker's HOSTILE_CANARY and PDPP_DATABASE_URL (not in its own environment)
  cmdline     the worker's data directory, from the `--data-dir D` on its command line
  devstack    D/devstack.json readable (D found above, else HOSTILE_DATA_DIR)
  postgres    a connection to PostgreSQL over the unix socket in HOSTILE_PG_SOCKET_DIR,
              counting the rows of `runs`
  write       a file written into the worker's data directory
  escape      a grandchild in a session of its own with an empty environment, sleeping with
              HOSTILE_MARKER among its arguments (the test looks for it after the run)
  memory      HOSTILE_ALLOC_MB MiB allocated and touched
  fork        HOSTILE_FORKS sleeping children started, counting those the system allowed
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any


def environ() -> dict[str, Any]:
    pids = [os.getppid(), *sorted(int(p) for p in os.listdir("/proc") if p.isdigit())]
    readable, canary, database = 0, 0, 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                text = f.read()
        except OSError:
            continue
        readable += 1
        canary += b"HOSTILE_CANARY=" in text
        database += b"PDPP_DATABASE_URL=" in text
    return {"ppid": os.getppid(), "readable": readable, "canary": canary, "database_url": database}


def cmdline() -> dict[str, Any]:
    """A `--data-dir D` on the command line of its parent, the worker, or of an ancestor."""
    pid = os.getppid()
    while pid > 1:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().decode("utf-8", "replace").split("\0")
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
        if "--data-dir" in args[:-1]:
            return {"data_dir": args[args.index("--data-dir") + 1]}
        pid = parent
    return {"data_dir": None}


def devstack(data_dir: str) -> dict[str, Any]:
    try:
        text = (Path(data_dir) / "devstack.json").read_text()
    except OSError as e:
        return {"read": False, "error": e.strerror}
    return {"read": True, "database_url": bool(re.search(r"postgres", text))}


def postgres(socket_dir: str) -> dict[str, Any]:
    import asyncio

    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(host=socket_dir, user="postgres", database="postgres", timeout=5)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM runs"))
        finally:
            await conn.close()

    try:
        return {"connected": True, "runs": asyncio.run(count())}
    except Exception as e:
        return {"connected": False, "error": type(e).__name__}


def write(data_dir: str) -> dict[str, Any]:
    try:
        (Path(data_dir) / "planted-by-a-connector").write_text("x")
        return {"written": True}
    except OSError as e:
        return {"written": False, "error": e.strerror}


def escape(marker: str) -> dict[str, Any]:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)", marker], env={}, start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return {"started": child.pid > 0}


def memory(mb: int) -> dict[str, Any]:
    try:
        block = bytearray(mb << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        del block
        return {"allocated": True}
    except MemoryError:
        return {"allocated": False}


def fork(n: int) -> dict[str, Any]:
    children = []
    for _ in range(n):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            os.execv("/bin/sleep", ["sleep", "60"])
        children.append(pid)
    for pid in children:  # it was only trying
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return {"started": len(children), "of": n}


def main() -> None:
    start = json.loads(sys.stdin.readline())
    env = os.environ
    report: dict[str, Any] = {"environ": environ(), "cmdline": cmdline()}
    data_dir = report["cmdline"]["data_dir"] or env["HOSTILE_DATA_DIR"]
    report["devstack"] = devstack(data_dir)
    report["postgres"] = postgres(env["HOSTILE_PG_SOCKET_DIR"])
    report["write"] = write(data_dir)
    report["escape"] = escape(env["HOSTILE_MARKER"])
    report["memory"] = memory(int(env["HOSTILE_ALLOC_MB"]))
    report["fork"] = fork(int(env["HOSTILE_FORKS"]))
    Path(env["HOSTILE_REPORT"]).write_text(json.dumps(report))
    assert start["type"] == "START"
    print(json.dumps({"type": "DONE", "status": "succeeded", "records_emitted": 0}))
    sys.stdout.flush()
    sys.stdin.read()


if __name__ == "__main__":
    main()
