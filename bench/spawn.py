"""What the sandbox costs a connector's start: the same command spawned with and without it.

    python bench/spawn.py [--times N]

Each spawn is a ConnectorProcess of `python -c pass` (the worker's interpreter) and `true`,
timed from start() to its exit. The last line is machine-readable:

    python_ms=<median> python_sandboxed_ms=<median> true_ms=<median> true_sandboxed_ms=<median>
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from activities.environment import connector_env
from activities.process import ConnectorProcess
from activities.sandbox import Sandbox
from pdpp_orch.models import RunInput
from pdpp_orch.registry import ConnectorEntry


async def once(entry: ConnectorEntry, sandbox: Sandbox | None, work: Path) -> float:
    env = connector_env(entry, work, RunInput(connector=entry.name, run_id="bench"), entry.name)
    launch = sandbox.prepare(entry, [], work, env, made=False) if sandbox else None
    proc = ConnectorProcess(entry.command, env, work, launch)
    began = time.perf_counter()
    await proc.start()
    proc.close_stdin()
    await proc.wait()
    took = time.perf_counter() - began
    proc.close_stdout()
    await proc.finish_stderr()
    return took * 1000


async def main(times: int) -> None:
    with tempfile.TemporaryDirectory(prefix="pdpp-spawn-") as tmp:
        work = Path(tmp)
        os.chmod(tmp, 0o777)  # as root, the sandboxed command runs as a uid of its own
        sandbox = Sandbox.for_worker(work / "worker-data")
        figures = {}
        for label, command in (("python", [sys.executable, "-c", "pass"]), ("true", ["true"])):
            entry = ConnectorEntry(name="spawn", command=command, manifest=work / "m.json")
            for boxed in (False, True):
                runs = [await once(entry, sandbox if boxed else None, work) for _ in range(times)]
                key = f"{label}_sandboxed_ms" if boxed else f"{label}_ms"
                figures[key] = statistics.median(runs)
                print(f"{key}: median {figures[key]:.1f}, min {min(runs):.1f}, max {max(runs):.1f}")
        print(" ".join(f"{k}={v:.1f}" for k, v in figures.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--times", type=int, default=30)
    asyncio.run(main(parser.parse_args().times))
