"""`UpstreamProcess`: the simulated upstreams in a child process, for tests, the demo and the CLI.

The server runs in its own process so that serving 600k Slack messages never competes with the
worker's or the test's event loop, and so that connectors (themselves subprocesses) reach it
exactly as they would reach a real service: over HTTP at a URL.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from pdpp_orch.upstream.client import ControlClient, UpstreamError, plan_json
from pdpp_orch.upstream.faults import FaultPlan

PlanLike = str | Path | Mapping[str, Any] | FaultPlan


class UpstreamProcess(ControlClient):
    """`python -m pdpp_orch.upstream` as a child process, with helpers for its control routes.

    `world` is a preset name, a world JSON file, or a mapping of overrides (written to a file;
    `{"preset": "small", "slack": {"messages": 10000}}`). `plan` is a plan file, a preset name
    (`case-e`), a mapping or a `FaultPlan`. Use as a (async) context manager or call
    `start()`/`stop()`.
    """

    def __init__(
        self,
        world: str | Path | Mapping[str, Any] = "small",
        plan: PlanLike | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 30.0,
    ) -> None:
        self.world = world
        self.plan = plan
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._log: IO[bytes] | None = None
        self._url: str | None = None
        self.pid: int | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:41234` (only once started)."""
        if self._url is None:
            raise UpstreamError("upstream process is not running")
        return self._url

    def _spawn(self) -> Path:
        if self._proc is not None:
            raise UpstreamError("already started")
        self._dir = Path(tempfile.mkdtemp(prefix="pdpp-upstream-"))
        world = str(self.world)
        if isinstance(self.world, Mapping):
            world = str(self._dir / "world.json")
            Path(world).write_text(json.dumps(dict(self.world)))
        args = ["--host", self.host, "--port", str(self.port), "--world", world]
        if isinstance(self.plan, (Mapping, FaultPlan)):
            plan_file = self._dir / "plan.json"
            plan_file.write_text(json.dumps(plan_json(self.plan)))
            args += ["--plan", str(plan_file)]
        elif self.plan is not None:
            args += ["--plan", str(self.plan)]
        ready = self._dir / "ready.json"
        self._log = (self._dir / "upstream.log").open("wb")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "pdpp_orch.upstream", *args, "--ready-file", str(ready)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return ready

    def _check(self, ready: Path, deadline: float) -> bool:
        """True once ready; raises (after stopping) if the process died or the deadline passed."""
        assert self._proc is not None
        if ready.is_file():
            info = json.loads(ready.read_text())
            self._url, self.pid = info["url"], info["pid"]
            return True
        code = self._proc.poll()
        if code is not None or time.monotonic() > deadline:
            tail = self.log_tail()
            self.stop()
            what = f"exited with code {code}" if code is not None else f"not ready in {self.startup_timeout}s"
            raise UpstreamError(f"upstream process {what}; its output ends with:\n{tail}")
        return False

    def start(self) -> Self:
        """Start the server and wait until it listens."""
        ready = self._spawn()
        deadline = time.monotonic() + self.startup_timeout
        while not self._check(ready, deadline):
            time.sleep(0.02)
        return self

    async def astart(self) -> Self:
        """`start()` without blocking the event loop while waiting."""
        ready = self._spawn()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._check(ready, deadline):
                return self
            await asyncio.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds; removes the temporary files. Idempotent."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._url = None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the server wrote to stdout/stderr."""
        if self._dir is None or not (self._dir / "upstream.log").is_file():
            return ""
        text = (self._dir / "upstream.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)
