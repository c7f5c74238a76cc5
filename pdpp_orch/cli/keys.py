"""`keygen` and `codec-server`: payload encryption for Temporal."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from pdpp_orch import codec_server as server
from pdpp_orch.cli.common import err, error, finish, run_async
from pdpp_orch.cli.stack import stop_event
from pdpp_orch.codec import EncryptionCodec, Keyring, new_key_entry
from pdpp_orch.control import UsageError
from pdpp_orch.manifest import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def keygen(
    key_id: Annotated[str, typer.Argument(help="A name for the key, e.g. the date: 2026-11.")],
) -> None:
    """Print a new AES-256 key entry `KEY_ID=BASE64` for PDPP_ENCRYPTION_KEYS or the key file.
    Put it first to encrypt with it; keep the old entries after it so old histories decrypt."""
    try:
        print(new_key_entry(key_id))
    except ConfigError as e:
        error(str(e))
        finish(2)


def codec_server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8888,
    ui_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--ui-origin", help="A web UI origin allowed to call it (repeatable), e.g. http://localhost:8233."
        ),
    ] = None,
    allow_unauthenticated: Annotated[
        bool,
        typer.Option(
            "--allow-unauthenticated",
            help="No token, on any address: only behind a proxy that authenticates the UI's users.",
        ),
    ] = False,
    host_name: Annotated[
        list[str] | None,
        typer.Option(
            "--host-name",
            help="Without a token: a Host it answers for besides loopback names (repeatable), e.g. the"
            " name the web UI calls it by behind its proxy.",
        ),
    ] = None,
) -> None:
    """Serve Temporal's remote codec endpoints (/decode, /encode) with the configured keys, so
    the web UI (its codec server setting, or TEMPORAL_CODEC_ENDPOINT) and `temporal workflow
    show --codec-endpoint URL --codec-auth "Bearer TOKEN"` show payloads in clear. Requests must
    carry `Authorization: Bearer $PDPP_CODEC_TOKEN`; without a token it refuses to listen
    beyond loopback (unless --allow-unauthenticated) and answers only requests for a loopback
    name or a --host-name."""
    run_async(_codec_server(host, port, ui_origin or [], allow_unauthenticated, host_name or []))


async def _codec_server(
    host: str, port: int, origins: list[str], allow_unauthenticated: bool, host_names: list[str]
) -> int:
    keyring = Keyring.from_env()
    if keyring is None:
        raise UsageError("no key configured: set PDPP_ENCRYPTION_KEYS or PDPP_ENCRYPTION_KEY_FILE")
    token = os.environ.get("PDPP_CODEC_TOKEN") or None
    if token is None and not allow_unauthenticated and host not in LOOPBACK:
        raise UsageError("set PDPP_CODEC_TOKEN to listen beyond loopback (or --allow-unauthenticated)")
    runner = await server.serve(EncryptionCodec(keyring), token, origins, host, port, host_names)
    keys = f"{len(keyring.keys)} key(s)"
    err.print(f"codec server on http://{host}:{port} ({keys}, {_who(token, host)}); Ctrl-C to stop")
    stop = stop_event()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def _who(token: str | None, host: str) -> str:
    """Who may decrypt, as the start line says it."""
    if token:
        return "bearer token required"
    if host in LOOPBACK:
        return "no token: anyone on this machine"
    return "NO TOKEN: anyone who reaches this address (--allow-unauthenticated)"
