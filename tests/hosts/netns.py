"""Hosts as Linux network namespaces, for tests that need more than one machine.

A `Network` is a switch: a namespace of its own holding a bridge. Each `Host` is a namespace
with one interface, `eth0`, at 10.231.0.N/24, cabled to that bridge by a veth pair. Nothing
is created in the test's own namespace: the addresses exist only inside the namespaces, and
interface names are private to them, so two test sessions on one machine never collide (the
namespace names carry a per-session tag, `SESSION`).

    net = Network.create("loss")             # skips the test unless root with `ip netns`
    server = net.host("server")              # 10.231.0.1
    proc = server.run(["temporal", ...], log=path)     # `ip netns exec` (Popen)
    addr = server.forward(7233)              # "127.0.0.1:PORT" here, reaching server's :7233
    host.cut_link(); host.restore_link()     # a silent partition: the cable pulled at the switch
    host.power_off()                         # the cable pulled, then every process SIGKILLed
    host.kill_all()                          # every process in the namespace SIGKILLed
    net.destroy()                            # processes, forwarders, namespaces

`destroy` runs on failure too when the network is used through the `network` fixture
(tests/hosts/conftest.py), and `sweep()` removes whatever namespace of this session is left
(the fixture module calls it at the session's end). `skip_reason()` says why these tests
cannot run here (not root, no `ip netns`), for `pytest.skip`.

Processes run through `ip netns exec`, which execs the command in the host's namespace: a
host's processes are exactly `ip netns pids NAME` (a connector started by a worker there is in
it too). The forwarders are threads of the test process that entered the host's namespace
(setns(2) is per thread), so the test's own clients reach servers that listen only inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from tests.relay import relay

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
# Unique per test session (and pid, for a person reading `ip netns list`).
SESSION = f"{os.getpid():x}{uuid.uuid4().hex[:4]}"
PREFIX = "pdpp-"
SUBNET = "10.231.0"


def skip_reason() -> str | None:
    """Why hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "multi-host tests need root (network namespaces); CI runs them as root"
    if shutil.which("ip") is None:
        return "multi-host tests need iproute2's `ip` (network namespaces)"
    probe = f"{PREFIX}{SESSION}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed here: {made.stderr.strip()[:200]}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")


def netns_pids(name: str) -> list[int]:
    done = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split()]


def kill_namespace(name: str, seconds: float = 10.0) -> list[int]:
    """SIGKILL every process in namespace `name` until none is left (a dying worker's connector
    may still be forking); returns the pids that would not go."""
    deadline = time.monotonic() + seconds
    while True:
        pids = netns_pids(name)
        if not pids or time.monotonic() > deadline:
            return pids
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def sweep(session: str = SESSION) -> list[str]:
    """Remove every namespace this session made (and the processes in them); returns their names."""
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    mine = [line.split()[0] for line in done.stdout.splitlines() if line.startswith(f"{PREFIX}{session}-")]
    for name in mine:
        kill_namespace(name)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return mine


def _enter(name: str) -> None:
    """Move the calling thread into namespace `name` (sockets it opens from now on live there)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


class Forwarder(threading.Thread):
    """127.0.0.1:`port` here → 127.0.0.1:`target` inside namespace `netns`, byte for byte
    (gRPC's HTTP/2 and PostgreSQL's protocol alike)."""

    def __init__(self, netns: str, target: int):
        super().__init__(daemon=True, name=f"forward-{netns}-{target}")
        self.netns, self.target = netns, target
        self.sock = socket.create_server(("127.0.0.1", 0))  # in the test's namespace
        self.port = int(self.sock.getsockname()[1])
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self._stop: asyncio.Event | None = None

    def run(self) -> None:
        _enter(self.netns)
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._pipe, sock=self.sock)
        self.ready.set()
        async with server:
            await self._stop.wait()
        pipes = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in pipes:
            t.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            r2, w2 = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            w.close()
            return

        await relay(r, w, r2, w2)

    def stop(self) -> None:
        if self._stop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._stop.set)
        self.join(5)


class Host:
    """One machine: a namespace with `eth0` at `address`, cabled to its network's switch."""

    def __init__(self, net: Network, name: str, index: int):
        self.net, self.name, self.index = net, name, index
        self.netns = f"{net.prefix}{name}"
        self.address = f"{SUBNET}.{index}"
        self.port_name = f"p{index}"  # the switch's end of the cable
        self.procs: list[subprocess.Popen[bytes]] = []
        self.forwarders: list[Forwarder] = []

    def _create(self) -> None:
        ip("netns", "add", self.netns)
        ip("link", "set", "lo", "up", netns=self.netns)
        sw = self.net.switch
        ip("link", "add", self.port_name, "type", "veth", "peer", "name", "eth0", "netns", self.netns,
           netns=sw)  # fmt: skip
        ip("link", "set", self.port_name, "master", "br0", netns=sw)
        ip("link", "set", self.port_name, "up", netns=sw)
        ip("addr", "add", f"{self.address}/24", "dev", "eth0", netns=self.netns)
        ip("link", "set", "eth0", "up", netns=self.netns)

    def run(
        self,
        cmd: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `cmd` on this host (its output appended to `log`)."""
        out = open(log, "ab") if log else subprocess.DEVNULL  # the child holds it open
        try:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *cmd],
                env=env if env is not None else dict(os.environ),
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            if log:
                out.close()  # type: ignore[union-attr]
        self.procs.append(proc)
        return proc

    def check(self, cmd: Sequence[str], timeout: float = 30.0) -> str:
        """Run `cmd` on this host to its end; its stdout (raises on failure)."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.netns, *cmd], capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} on {self.name}: {done.stderr.strip()[:500]}")
        return done.stdout

    @property
    def netns_id(self) -> str:
        """The namespace as /proc/PID/ns/net names it (`net:[INODE]`)."""
        return f"net:[{os.stat(NETNS_DIR / self.netns).st_ino}]"

    def pids(self) -> list[int]:
        """Every process on this host."""
        return netns_pids(self.netns)

    def forward(self, port: int) -> str:
        """An address in the test's own namespace that reaches this host's `port`."""
        fwd = Forwarder(self.netns, port)
        fwd.start()
        if not fwd.ready.wait(10):
            raise RuntimeError(f"forwarder to {self.name}:{port} did not start")
        self.forwarders.append(fwd)
        return f"127.0.0.1:{fwd.port}"

    def cut_link(self) -> None:
        """Unplug the cable at the switch: both ends stay up, packets go nowhere (no reset, no
        error: a silent partition, as when a laptop's Wi-Fi drops)."""
        ip("link", "set", self.port_name, "nomaster", netns=self.net.switch)

    def restore_link(self) -> None:
        ip("link", "set", self.port_name, "master", "br0", netns=self.net.switch)

    def kill_all(self) -> list[int]:
        """SIGKILL every process on the host; returns the pids that were there."""
        pids = self.pids()
        left = kill_namespace(self.netns)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        if left:
            raise RuntimeError(f"processes on {self.name} would not die: {left}")
        return pids

    def power_off(self) -> list[int]:
        """The host loses power: its network goes first (nothing it sends from now on arrives:
        no FIN, no reset, as from a machine without power), then every process dies."""
        self.cut_link()
        return self.kill_all()

    def _destroy(self) -> None:
        for fwd in self.forwarders:
            with contextlib.suppress(Exception):
                fwd.stop()
        kill_namespace(self.netns)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)


class Network:
    """A switch (a namespace with bridge `br0`) and the hosts cabled to it."""

    def __init__(self, label: str):
        self.prefix = f"{PREFIX}{SESSION}-{label}-"
        self.switch = f"{self.prefix}switch"
        self.hosts: list[Host] = []

    @classmethod
    def create(cls, label: str) -> Network:
        net = cls(label)
        try:
            ip("netns", "add", net.switch)
            ip("link", "add", "br0", "type", "bridge", netns=net.switch)
            ip("link", "set", "br0", "up", netns=net.switch)
        except BaseException:
            net.destroy()
            raise
        return net

    def __getitem__(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def host(self, name: str) -> Host:
        h = Host(self, name, len(self.hosts) + 1)
        self.hosts.append(h)
        h._create()
        return h

    def destroy(self) -> None:
        """Every process, forwarder and namespace of this network, whatever state it is in."""
        for h in reversed(self.hosts):  # the servers last: workers never see them go
            with contextlib.suppress(Exception):
                h._destroy()
        subprocess.run(["ip", "netns", "del", self.switch], capture_output=True)
