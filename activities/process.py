"""A connector child process: its own process group (in its sandbox, when it has one), stdin
kept open for replies, stderr kept as a bounded tail for diagnostics (never copied into
Temporal history); it dies with its worker."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import logging
import marshal
import os
import signal
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path

from activities.orphans import OWNER_ENV, owner_tag
from activities.sandbox import Launch
from pdpp_orch.store.logs import STDERR_KEEP_LINES

log = logging.getLogger(__name__)

# The last lines of stderr held: as many as store/logs.py keeps per attempt (`runs` the last 50).
STDERR_TAIL_LINES = 50
PIPE_BUFFER = 4 << 20
STDOUT_PIPE_BYTES = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux
_PR_SET_PDEATHSIG = 1
# How long a sandbox may take to start its connector (it takes milliseconds).
SANDBOX_START_S = 30.0


class SandboxFailed(Exception):
    """The sandbox's launcher could not start the connector: `sandbox: …` (the sandbox could
    not be made) or `exec: …` (the connector's command could not be run)."""


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook that makes the kernel SIGKILL the connector when the worker dies, so a
    worker killed with SIGKILL leaves no connector behind (Linux only; elsewhere, None)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the worker died before the hook ran
            os._exit(1)

    return hook


class StdoutReader(asyncio.Protocol):
    """The connector's stdout as the pipe delivers it, chunk by chunk: unlike a StreamReader,
    nothing is copied into a buffer and out again. Past `limit` unread bytes the pipe is not
    read, so a connector faster than the runtime waits on its full pipe."""

    def __init__(self, limit: int):
        self._limit = limit
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.ReadTransport | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > self._limit and not self._paused and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self) -> bytes:
        """The next chunk, waiting for one; b"" once the connector's stdout is closed."""
        while not self._chunks:
            if self._eof:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._size -= len(chunk)
        if self._paused and self._size <= self._limit // 2 and self._transport is not None:
            self._transport.resume_reading()
            self._paused = False
        return chunk


class ConnectorProcess:
    """Spawns a connector and owns its whole process group until it is reaped."""

    def __init__(
        self, command: list[str], env: dict[str, str], cwd: Path | None, launch: Launch | None = None
    ):
        self.command = command
        self.env = env
        self.cwd = cwd
        self.launch = launch
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_KEEP_LINES)
        self.stderr_lines = 0
        self.stderr_bytes = 0
        self._stderr_task: asyncio.Task[None] | None = None
        self._stdout: StdoutReader | None = None
        self._stdout_transport: asyncio.ReadTransport | None = None

    async def start(self) -> None:
        """Spawn the connector (through its sandbox's launcher, which starts it in the sandbox
        and fails if it cannot: SandboxFailed)."""
        read_end, write_end = os.pipe()
        # A busy connector writes up to 1 MiB ahead, taken in reads as large: the default
        # 64 KiB pipe, read 256 KiB at a time, costs a large allocation per 64 KiB of lines.
        with contextlib.suppress(OSError):  # over /proc/sys/fs/pipe-max-size: the default works
            fcntl.fcntl(read_end, F_SETPIPE_SZ, STDOUT_PIPE_BYTES)
        command, keep, launched = self.command, tuple[int, ...](), None
        if self.launch is not None:
            launched = _Launched(self.launch)
            command, keep = launched.command, launched.passed
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=write_end,
                stderr=asyncio.subprocess.PIPE,
                env={**self.env, OWNER_ENV: owner_tag()},
                cwd=self.cwd,
                start_new_session=True,  # its own process group, so we can end all of it
                preexec_fn=_die_with_parent(),
                limit=PIPE_BUFFER,  # stderr's; the transport pauses at 2x this
                pass_fds=keep,
            )
        except BaseException:
            os.close(read_end)
            if launched is not None:
                launched.close()
                launched.failure()  # closes the last descriptor
            raise
        finally:
            os.close(write_end)
            if launched is not None:
                launched.close()
        transport, self._stdout = await asyncio.get_running_loop().connect_read_pipe(
            lambda: StdoutReader(PIPE_BUFFER), os.fdopen(read_end, "rb", buffering=0)
        )
        if hasattr(transport, "max_size"):
            transport.max_size = STDOUT_PIPE_BYTES
        self._stdout_transport = transport
        self._stderr_task = asyncio.create_task(self._drain_stderr())
        if launched is not None:
            await self._started(launched)

    async def _started(self, launched: _Launched) -> None:
        """Wait for the launcher to exec the connector; SandboxFailed if it could not."""
        reading = asyncio.ensure_future(asyncio.to_thread(launched.failure))
        try:
            failure = await asyncio.wait_for(asyncio.shield(reading), SANDBOX_START_S)
        except TimeoutError:
            await self.terminate(grace=0)
            await reading
            failure = f"sandbox: the connector was not started in {SANDBOX_START_S:.0f} s"
        if failure:
            await self.terminate(grace=0)
            await self.finish_stderr()
            raise SandboxFailed(failure)

    @property
    def exited(self) -> bool:
        return self.proc is not None and self.proc.returncode is not None

    @property
    def stdout(self) -> StdoutReader:
        assert self._stdout is not None
        return self._stdout

    def close_stdout(self) -> None:
        if self._stdout_transport is not None:
            self._stdout_transport.close()

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
            self.stderr_lines += 1
            self.stderr_tail.append(chunk[:500].decode("utf-8", "replace").rstrip())


class _Launched:
    """The descriptors a sandbox's launcher is started with: its spec (a memfd) and the pipe
    it reports a failure on (closed by the connector's exec)."""

    def __init__(self, launch: Launch):
        self.spec = os.memfd_create("pdpp-sandbox-spec")
        os.write(self.spec, marshal.dumps(launch.spec))
        os.lseek(self.spec, 0, os.SEEK_SET)
        self._errors, self._err_w = os.pipe()
        self.passed = (self.spec, self._err_w)
        self.command = launch.command(self.spec, self._err_w)

    def close(self) -> None:
        """Our copies of what the launcher was given (it has its own); once."""
        for fd in (self.spec, self._err_w):
            if fd >= 0:
                os.close(fd)
        self.spec = self._err_w = -1

    def failure(self) -> str:
        """What the launcher reported, read until every copy of its pipe is closed ("": the
        connector was exec'd). Call once, after close()."""
        chunks = []
        try:
            while chunk := os.read(self._errors, 4096):
                chunks.append(chunk)
        finally:
            os.close(self._errors)
        return b"".join(chunks).decode("utf-8", "replace")
