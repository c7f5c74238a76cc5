"""Who a sandboxed connector is, when the worker runs as root: a uid of its own, from a
documented range, recorded as the owner of its persistent data directory (so it is the same
at every run, and no two connectors share one)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

from activities.environment import connector_data_dir

# uids (and gids) FIRST_UID .. FIRST_UID + UID_COUNT - 1 are the connectors': no user of the
# machine should have one (PDPP_SANDBOX_FIRST_UID moves the range).
DEFAULT_FIRST_UID = 1_900_000_000
UID_COUNT = 65_536
FIRST_UID_ENV = "PDPP_SANDBOX_FIRST_UID"


def first_uid() -> int:
    return int(os.environ.get(FIRST_UID_ENV) or DEFAULT_FIRST_UID)


def in_range(uid: int) -> bool:
    return first_uid() <= uid < first_uid() + UID_COUNT


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One allocation at a time among the workers sharing this data directory."""
    fd = os.open(root / ".uids.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def give(path: Path, uid: int) -> None:
    """`path` and everything in it to `uid` (and its group)."""
    os.chown(path, uid, uid, follow_symlinks=False)
    for parent, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(parent, name), uid, uid, follow_symlinks=False)


def connector_uid(data_root: Path, connector: str) -> tuple[Path, int]:
    """The connector's persistent data directory and its uid, allocated at its first run: the
    first free uid of the range from a hash of its name on."""
    home = connector_data_dir(data_root, connector)
    owner = home.stat().st_uid
    if in_range(owner):
        return home, owner
    with _locked(data_root):
        used = {p.stat().st_uid for p in data_root.iterdir() if p.is_dir() and p != home}
        start = zlib.crc32(connector.encode()) % UID_COUNT
        for i in range(UID_COUNT):
            uid = first_uid() + (start + i) % UID_COUNT
            if uid not in used:
                break
        give(home, uid)
    return home, uid


def writable_by(path: Path, uid: int) -> bool:
    """Whether `uid` (without supplementary groups) may write to `path`, by its mode."""
    st = path.stat()
    if st.st_uid == uid:
        return bool(st.st_mode & 0o200)
    if st.st_gid == uid:
        return bool(st.st_mode & 0o020)
    return bool(st.st_mode & 0o002)
