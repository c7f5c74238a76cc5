"""A connector child process: its own process group, stdin kept open for replies, stderr kept
as a bounded tail for diagnostics (never copied into Temporal history)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from pathlib import Path

STDERR_TAIL_LINES = 50
PIPE_BUFFER = 4 << 20


class ConnectorProcess:
    """Spawns a connector and owns its whole process group until it is reaped."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path | None):
        self.command = command
        self.env = env
        self.cwd = cwd
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self.stderr_bytes = 0
        self._stderr_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,  # its own process group, so we can end all of it
            limit=PIPE_BUFFER,  # the pipe transport pauses at 2x this; small values starve reads
        )
        self._stderr_task = asyncio.create_task(self._drain_stderr())

    @property
    def stdout(self) -> asyncio.StreamReader:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout

    async def send(self, line: bytes) -> bool:
        """Write one line to the connector's stdin; False if it has gone away."""
        assert self.proc is not None and self.proc.stdin is not None
        if self.proc.stdin.is_closing():
            return False
        try:
            self.proc.stdin.write(line + b"\n")
            await self.proc.stdin.drain()
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def close_stdin(self) -> None:
        if self.proc and self.proc.stdin and not self.proc.stdin.is_closing():
            self.proc.stdin.close()

    def signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    async def wait(self, within: float | None = None) -> int | None:
        """Wait for exit; None if it did not exit within `within` seconds."""
        assert self.proc is not None
        try:
            return await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            return None

    async def terminate(self, grace: float = 5.0) -> int:
        """End the whole group: SIGTERM, then SIGKILL after `grace` seconds."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.signal_group(signal.SIGTERM)
            code = await self.wait(grace)
            if code is None:
                self.signal_group(signal.SIGKILL)
                code = await self.proc.wait()
        self.reap_group()
        return self.proc.returncode if self.proc.returncode is not None else -9

    def reap_group(self) -> None:
        """Children the connector left behind die with it."""
        self.signal_group(signal.SIGKILL)

    async def finish_stderr(self) -> None:
        if self._stderr_task:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._stderr_task, 5)

    async def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        reader = self.proc.stderr
        while True:
            try:
                chunk = await reader.readline()
            except ValueError:  # a line over the reader's limit: keep only that it happened
                chunk = await reader.read(64 * 1024)
            if not chunk:
                return
            self.stderr_bytes += len(chunk)
            self.stderr_tail.append(chunk[:500].decode("utf-8", "replace").rstrip())
