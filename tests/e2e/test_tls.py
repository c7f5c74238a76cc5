"""Connecting as the temporal CLI does (issue 23): workers, commands and the schedules they
create read Temporal's environment configuration (the TEMPORAL_* variables and the profile
file), here against a Temporal that demands a client certificate: a TLS-terminating proxy
(tests/tls.py, certificates made here) in front of the session's dev server. PostgreSQL's
TLS comes through PDPP_DATABASE_URL (sslmode, sslrootcert), against a server that refuses
connections without it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import Client

from pdpp_orch.control.schedules import schedule_id
from pdpp_orch.store import Store
from tests.conftest import ROOT, Harness
from tests.faults.test_faults import faulty, pages
from tests.tls import PgTlsProxy, Pki, TlsProxy

pytestmark = pytest.mark.slow


async def pdpp(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pdpp_orch.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def base_env(h: Harness, pg_url: str, tmp: Path) -> dict[str, str]:
    """The environment of a command on another machine: no TEMPORAL_* of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    return env | {
        "PDPP_DATABASE_URL": pg_url,
        "PDPP_TASK_QUEUE": h.task_queue,
        "PDPP_CONNECTORS": str(h.registry_path),
        "PDPP_DATA_DIR": str(tmp / "data"),  # no dev stack there to fall back on
    }


async def test_worker_cli_and_schedules_reach_an_mtls_temporal_through_its_environment_configuration(
    tmp_path: Path, client: Client, store: Store, pg_url: str
) -> None:
    pki = Pki(tmp_path)
    h = Harness(tmp_path, client, store)
    name = faulty(h, [pages("a", 40, every=10), {"done": "succeeded"}])
    async with TlsProxy(pki, client.service_client.config.target_host) as proxy:
        env = base_env(h, pg_url, tmp_path)
        tls_vars = {
            "TEMPORAL_ADDRESS": proxy.address,
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pki.ca),
            "TEMPORAL_TLS_CLIENT_CERT_PATH": str(pki.client),
            "TEMPORAL_TLS_CLIENT_KEY_PATH": str(pki.client_key),
        }
        # The variables alone.
        code, out, err = await pdpp(env | tls_vars, "health", "--timeout", "10")
        assert (code, out.strip()) == (0, "ok: Temporal and PostgreSQL answer"), err
        verified = proxy.verified
        assert verified >= 1
        # Without the client certificate the proxy ends the handshake: unhealthy, and said why.
        no_cert = {k: v for k, v in tls_vars.items() if "CLIENT" not in k}
        code, _, err = await pdpp(env | no_cert, "health", "--timeout", "5")
        assert code == 1 and "unhealthy: Temporal at" in err, err
        # A server CA that did not sign the server's certificate: refused by the client.
        code, _, err = await pdpp(env | tls_vars | {"TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pki.other_ca)},
                                  "health", "--timeout", "5")  # fmt: skip
        assert code == 1, err

        # The profile file: a worker, a waited-for run, a schedule — nothing in TEMPORAL_ADDRESS.
        profile = tmp_path / "temporal.toml"
        profile.write_text(
            f'[profile.cluster]\naddress = "{proxy.address}"\nnamespace = "default"\n'
            f'[profile.cluster.tls]\nserver_ca_cert_path = "{pki.ca}"\n'
            f'client_cert_path = "{pki.client}"\nclient_key_path = "{pki.client_key}"\n'
        )
        via_profile = env | {"TEMPORAL_CONFIG_FILE": str(profile), "TEMPORAL_PROFILE": "cluster"}
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pdpp_orch.cli", "worker", env=via_profile, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            code, out, err = await pdpp(via_profile, "run", name, "--wait", "--json")
            assert code == 0, err
            assert json.loads(out)["records_durable"] == 40
            code, _, err = await pdpp(via_profile, "schedule", "create", name, "--every", "24h", "--paused")
            assert code == 0, err
        finally:
            worker.send_signal(2)
            said, _ = await asyncio.wait_for(worker.communicate(), 30)
        assert f"worker on {proxy.address}" in said.decode()
    # The schedule is there (seen directly, without the proxy), and every connection through
    # the proxy presented the client certificate.
    desc = await client.get_schedule_handle(schedule_id(name)).describe()
    assert desc.schedule.state.paused
    await client.get_schedule_handle(schedule_id(name)).delete()
    assert proxy.verified > verified


async def test_postgres_tls_comes_through_the_database_url(tmp_path: Path, pg_url: str) -> None:
    pki = Pki(tmp_path)
    here = await asyncpg.connect(pg_url)
    sockets = await here.fetchval("SELECT current_setting('unix_socket_directories')")
    port = await here.fetchval("SELECT current_setting('port')")
    await here.close()
    async with PgTlsProxy(pki, f"{sockets.split(',')[0]}/.s.PGSQL.{port}") as proxy:
        url = f"postgresql://postgres@{proxy.address}/postgres"
        verify = f"{url}?sslmode=verify-full&sslrootcert={pki.ca}"
        store = await Store.connect(verify)
        await store.close()
        assert proxy.tls >= 1
        # A client that does not ask for TLS is refused; one that verifies refuses a server
        # whose certificate its CA did not sign.
        with pytest.raises((ConnectionError, OSError, asyncpg.PostgresError)):
            await asyncpg.connect(f"{url}?sslmode=disable", timeout=5)
        with pytest.raises(Exception, match="certificate verify failed"):
            await asyncpg.connect(f"{url}?sslmode=verify-full&sslrootcert={pki.other_ca}", timeout=5)
        env = {**os.environ, "PDPP_DATABASE_URL": verify, "TEMPORAL_ADDRESS": "127.0.0.1:1"}
        code, out, err = await pdpp(env, "migrate")
        assert code == 0 and "record store schema at v" in out, err
