"""What a sandboxed connector sees of the file system: the mount steps its launcher takes.

Everything not named here is absent. Read-only: the system directories, the interpreter the
worker runs on (bundled connectors are Python modules of this package), the connector's
program and its script arguments, the paths its entry grants. Writable: its working directory,
its persistent data directory and the paths its entry grants writable. Hidden, wherever they
would show through the above: the worker's data directory (the dev stack's database, its
`devstack.json`, its logs), the registry files, every `file:` secret and the key and socket
files the worker's configuration names.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pdpp_orch

SYSTEM = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# /etc/resolv.conf is often a symlink into /run, which is not part of the view.
RESOLV_CONF = Path("/etc/resolv.conf")


@dataclass(frozen=True)
class Grant:
    path: Path
    writable: bool = False


def interpreter() -> list[Path]:
    """The Python the worker runs on (its prefixes hold the standard library and the installed
    packages) and this package, wherever it is (an editable install). Not the rest of
    sys.path: `python -m` puts the worker's working directory there."""
    found = {Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    found.add(Path(pdpp_orch.__file__).parent)
    return sorted(found)


def program(command: list[str], path_env: str, cwd: Path) -> list[Path]:
    """The connector's program with the prefix it is installed in (`…/bin/node` brings
    `…/`), and each argument that names an existing file (a script), as the files alone."""
    found: list[Path] = []
    exe = shutil.which(command[0], path=path_env) if "/" not in command[0] else str(cwd / command[0])
    if exe and os.path.exists(exe):
        real = Path(os.path.realpath(exe))
        found += [Path(exe), real, real.parent.parent if real.parent.name == "bin" else real.parent]
    for arg in command[1:]:
        candidate = cwd / arg
        if not arg.startswith("-") and candidate.is_file():
            found.append(candidate)
    return found


def _within(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def view(read_only: list[Path], writable: list[Path], hidden: list[Path]) -> list[list[Any]]:
    """The launcher's steps (`bind`, `hide`, `link`), in an order that makes them true: a
    path mounted after its parents, the hidden paths over what was bound, and explicit
    grants inside a hidden path over the hiding."""
    hide = sorted({h for p in hidden for h in (p, _real(p))})
    binds: dict[Path, bool] = {}
    links: dict[Path, str] = {}
    for path, rw in [*((p, False) for p in read_only), *((p, True) for p in writable)]:
        if not os.path.lexists(path):
            continue
        real = _real(path)
        if real != path:
            links[path] = str(real)
        binds[real] = binds.get(real, False) or rw
    kept: dict[Path, bool] = {}
    for path in sorted(binds, key=lambda p: (len(p.parts), p)):
        rw, hidden_here = binds[path], _within(path, hide)
        if any(q in path.parents and kept[q] == rw and _within(q, hide) == hidden_here for q in kept):
            continue  # already visible as it should be, through a parent
        kept[path] = rw
    outside = [p for p in kept if not _within(p, hide)]
    inside = [p for p in kept if _within(p, hide)]
    steps: list[list[Any]] = [["bind", str(p), kept[p]] for p in outside]
    steps += [["hide", str(p)] for p in hide]
    steps += [["bind", str(p), kept[p]] for p in inside]
    steps += [["link", str(p), target] for p, target in sorted(links.items())]
    return steps


def system() -> list[Path]:
    """The system directories, and the file behind /etc/resolv.conf when it is a link."""
    paths = [Path(p) for p in SYSTEM]
    if RESOLV_CONF.is_symlink():
        paths.append(_real(RESOLV_CONF))
    return paths
