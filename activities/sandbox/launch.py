"""The sandbox a connector runs in (Linux), as a small launcher the worker starts by path:

    python -I -S launch.py SPEC_FD ERROR_FD

It reads its spec (marshal: its interpreter is the worker's, and json would import `re` on
every start; built by activities/sandbox/policy.py) from SPEC_FD, then:

- the launcher (in the worker's namespaces, the process the worker waits for) enters new mount,
  PID and IPC namespaces — and a user namespace when not run as root — and forks
- the sandbox's init (PID 1 of the new PID namespace), which builds the mount view (a tmpfs root
  with only the spec's paths bound into it, /proc of its own namespace, a minimal /dev, a
  private /tmp), pivots into it and forks
- the connector, which takes its resource limits, drops to its uid (as root) or its
  capabilities (in a user namespace), sets no_new_privs and execs the connector's command.

Nothing is copied through these processes: the connector inherits stdin, stdout and stderr.
The launcher dies with the worker (the worker's PR_SET_PDEATHSIG), the init with the launcher
(its own), and when the init exits the kernel kills everything left in its PID namespace — so
nothing a connector starts outlives it, whatever session or environment it gives itself. A
failure before the connector's exec is written to ERROR_FD as `sandbox: …` or `exec: …`; the
connector's exec closes that descriptor, which is how the worker knows it started.

Standard library only, and nothing imported that is not needed: it starts for every connector.
"""

from __future__ import annotations

import ctypes
import marshal
import os
import resource
import select
import signal
import sys
from typing import Any, NoReturn

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 1, 2, 4
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
SYS_MOUNT_SETATTR = 442  # the same on every architecture (added after the tables were unified)
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
# statvfs flags that a remount must repeat (in a user namespace they are locked).
ST_TO_MS = {1: MS_RDONLY, 2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC, 1024: MS_NOATIME,
            2048: MS_NODIRATIME, 4096: MS_RELATIME}  # fmt: skip
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEVNULL = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)  # opened before the view changes
STAGE = "/tmp"  # where the new root is put together (a tmpfs of its own over the real /tmp)
libc = ctypes.CDLL(None, use_errno=True)


class Failed(Exception):
    """A step of the sandbox that could not be made: `stage` is "sandbox" or "exec"."""

    def __init__(self, stage: str, what: str, errno: int | None = None):
        super().__init__(f"{stage}: {what}" + (f": {os.strerror(errno)}" if errno else ""))


def _check(result: int, what: str) -> int:
    if result < 0:
        raise Failed("sandbox", what, ctypes.get_errno())
    return result


def mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = [x.encode() if x is not None else None for x in (src, dst, fstype, data)]
    _check(libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]), f"mount {dst}")


class MountAttr(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("attr_set", "attr_clr", "propagation", "userns_fd")]


def restrict(path: str, readonly: bool) -> None:
    """nosuid and nodev on `path` and every mount below it, and read-only unless writable."""
    attr = MountAttr(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (MOUNT_ATTR_RDONLY if readonly else 0), 0, 0, 0)
    done = libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), AT_RECURSIVE, ctypes.byref(attr), 32)
    if done == 0:
        return
    if ctypes.get_errno() != 38:  # ENOSYS: a kernel before 5.12, the top mount only
        raise Failed("sandbox", f"mount_setattr {path}", ctypes.get_errno())
    kept = sum(ms for st, ms in ST_TO_MS.items() if os.statvfs(path).f_flag & st)
    flags = kept | MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (MS_RDONLY if readonly else 0)
    mount(None, path, None, flags)


def prctl(option: int, arg: int) -> None:
    _check(libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl {option}")


def drop_capabilities() -> None:
    """No capability left, in any set (a user namespace's init and connector hold them all)."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    _check(libc.capset(header, data), "capset")


def enter_namespaces(spec: dict[str, Any]) -> None:
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | (CLONE_NEWUSER if spec["userns"] else 0)
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(flags), "unshare")
    if spec["userns"]:
        # The connector keeps the worker's uid, mapped to itself: files it writes are the
        # worker's user's, as without a sandbox; it holds no capability once it execs.
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"{uid} {uid} 1"),
            ("gid_map", f"{gid} {gid} 1"),
        ):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)


def make_point(path: str, directory: bool) -> None:
    """A mount point at `path` in the new root (an existing one is used as it is)."""
    if os.path.lexists(path):
        return
    os.makedirs(path if directory else os.path.dirname(path), mode=0o755, exist_ok=True)
    if not directory:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))


def apply(op: list[Any], root: str, tmpfs: list[str]) -> None:
    """One step of the spec's view: bind a path (read-only unless writable), hide one under an
    empty directory or file, or make a symlink."""
    kind, path = op[0], root + op[1]
    if kind == "bind":
        src = "/oldroot" + op[1]
        make_point(path, os.path.isdir(src))
        mount(src, path, None, MS_BIND | MS_REC)
        restrict(path, readonly=not op[2])
    elif kind == "hide" and os.path.lexists(path):
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
            tmpfs.append(path)
        else:
            mount("/empty", path, None, MS_BIND)
            restrict(path, readonly=True)
    elif kind == "link" and not os.path.lexists(path):
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        os.symlink(op[2], path)


def build_view(spec: dict[str, Any]) -> None:
    """The connector's whole file system, then pivot into it; the old one is gone."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", STAGE, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    os.chdir(STAGE)
    for d in ("newroot", "oldroot"):
        os.mkdir(d)
    os.close(os.open("empty", os.O_CREAT | os.O_WRONLY, 0o444))
    pivot = SYS_PIVOT_ROOT.get(os.uname().machine)
    if pivot is None:
        raise Failed("sandbox", f"no pivot_root for {os.uname().machine}")
    _check(libc.syscall(pivot, b".", b"oldroot"), "pivot_root")
    os.chdir("/")
    root, tmp_size = "/newroot", spec["tmp_bytes"]
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m")
    tmpfs = [root]
    os.mkdir(root + "/tmp")
    mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={tmp_size}")
    os.mkdir(root + "/proc")
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    build_dev(root + "/dev", tmp_size)
    tmpfs.append(root + "/dev")
    for op in spec["ops"]:
        apply(op, root, tmpfs)
    for path in reversed(tmpfs):  # the skeleton read-only: nothing to write there but /tmp
        mount(None, path, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(root)
    _check(libc.syscall(pivot, b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "umount the old root")
    os.chdir("/")


def build_dev(dev: str, shm_size: int) -> None:
    os.mkdir(dev)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=0755,size=64k")
    for name in DEVICES:
        if os.path.exists("/oldroot/dev/" + name):
            make_point(f"{dev}/{name}", directory=False)
            mount("/oldroot/dev/" + name, f"{dev}/{name}", None, MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):  # fmt: skip
        os.symlink(target, f"{dev}/{name}")
    os.mkdir(dev + "/shm")
    mount("tmpfs", dev + "/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={shm_size}")


def report(fd: int, e: BaseException) -> NoReturn:
    message = str(e) if isinstance(e, Failed) else f"sandbox: {type(e).__name__}: {e}"
    try:
        os.write(fd, message.encode("utf-8", "replace")[:1000])
    finally:
        os._exit(127)


def quiet() -> None:
    """Let go of the connector's stdin, stdout and stderr: the worker must see them close
    when the connector closes them (its stdout's end is how it learns of it), not when the
    launcher and init exit."""
    for fd in (0, 1, 2):
        os.dup2(DEVNULL, fd)


def connector(spec: dict[str, Any], err: int) -> NoReturn:
    """PID 2: limits, identity, no_new_privs, then the connector's own command."""
    try:
        os.chdir(spec["cwd"])
        for name, value in spec["limits"].items():
            resource.setrlimit(getattr(resource, name), (value, value))
        if spec["uid"] is not None:
            os.setgroups([])
            os.setresgid(spec["uid"], spec["uid"], spec["uid"])
            os.setresuid(spec["uid"], spec["uid"], spec["uid"])
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        if spec["userns"]:
            drop_capabilities()
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; a connector must not
            signal.signal(sig, signal.SIG_DFL)
    except (OSError, Failed) as e:
        report(err, e if isinstance(e, Failed) else Failed("sandbox", "connector setup", e.errno))
    argv = spec["argv"]
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        report(err, Failed("exec", argv[0], e.errno))


def init(spec: dict[str, Any], err: int, life: int, status: int) -> NoReturn:
    """PID 1 of the connector's namespace: dies with the launcher, builds the view, starts the
    connector and reaps until it exits — with it, everything else in the namespace dies."""
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if select.select([life], [], [], 0)[0]:  # the launcher is already gone
            os._exit(1)
        build_view(spec)
        pid = os.fork()
    except BaseException as e:
        report(err, e)
    if pid == 0:
        os.close(status)
        os.close(life)
        connector(spec, err)
    os.close(err)
    quiet()
    prctl(PR_SET_DUMPABLE, 0)
    if spec["userns"]:
        drop_capabilities()
    code = reap(pid)
    if os.WIFSIGNALED(code):
        os.write(status, str(os.WTERMSIG(code)).encode())
    os._exit(os.waitstatus_to_exitcode(code) % 256)


def reap(pid: int) -> int:
    """As init: pass the worker's signals on to the connector when they cannot reach it, reap
    every orphan, and return the connector's wait status once it has exited."""

    def forward(sig: int, _: Any) -> None:
        # The worker signals the connector's process group, which reaches the connector
        # directly — unless it started a session of its own (its group is then visible here).
        try:
            if os.getpgid(pid) != os.getpgid(0):
                os.kill(pid, sig)
        except OSError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while True:
        try:
            reaped, code = os.wait()
        except ChildProcessError:
            os._exit(1)
        if reaped == pid:
            return code


def launcher(spec: dict[str, Any], err: int) -> NoReturn:
    """The process the worker waits for: it ends the way the connector ended."""
    life_r, life_w = os.pipe()
    status_r, status_w = os.pipe()
    try:
        enter_namespaces(spec)
        pid = os.fork()
    except BaseException as e:
        report(err, e)
    if pid == 0:
        os.close(life_w)
        os.close(status_r)
        init(spec, err, life_r, status_w)
    os.close(err)
    os.close(life_r)
    os.close(status_w)
    quiet()
    # The worker signals the whole group; the connector takes care of itself, and this process
    # must outlive it (its death kills the namespace at once).
    for ignored in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(ignored, signal.SIG_IGN)
    _, code = os.waitpid(pid, 0)
    died_of = os.read(status_r, 16)
    sig = int(died_of) if died_of else (os.WTERMSIG(code) if os.WIFSIGNALED(code) else 0)
    if sig:  # die of it too: the worker sees what the connector died of
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # whose disposition is fixed
            signal.signal(sig, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(code))


def main() -> NoReturn:
    spec_fd, err = int(sys.argv[1]), int(sys.argv[2])
    os.set_inheritable(err, False)  # the connector's exec closes it
    try:
        with os.fdopen(spec_fd, "rb") as f:
            spec = marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError) as e:
        report(err, e)
    launcher(spec, err)


if __name__ == "__main__":
    main()
