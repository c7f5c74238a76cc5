"""`pdpp-orch codec-server`: decrypts payloads for the Temporal web UI and CLI, for people
allowed to see them (Temporal's remote codec protocol: POST /decode and /encode with
`{"payloads": [...]}` in proto JSON).

Each request is bounded (MAX_REQUEST_BYTES, and MAX_AT_ONCE of them at a time: one costs about
seven times its size while it is decoded), and without a token only requests for a loopback
name or a declared host name are answered, so a web page cannot reach it through a DNS name of
its own that points at this machine."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from pdpp_orch.codec import EncryptionCodec

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_REQUEST_BYTES = 8 << 20  # a history page is at most 4 MiB of payloads (gRPC's default)
MAX_AT_ONCE = 4
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


def make_app(
    codec: EncryptionCodec, token: str | None, origins: Iterable[str], host_names: Iterable[str] = ()
) -> web.Application:
    """The codec endpoints. With `token`, every request but /health must carry
    `Authorization: Bearer TOKEN`; without, its Host must be a loopback name or one of
    `host_names`. `origins` may call from a browser (CORS, credentials allowed)."""
    allowed = set(origins)
    hosts = LOOPBACK_NAMES | {h.lower() for h in host_names}
    busy = asyncio.Semaphore(MAX_AT_ONCE)

    @web.middleware
    async def cors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204)
        elif token is None and request.path != "/health" and _host_name(request) not in hosts:
            response = web.json_response({"error": "this server does not answer for that Host"}, status=421)
        elif token is not None and request.path != "/health" and not _authorised(request, token):
            response = web.json_response({"error": "missing or wrong bearer token"}, status=401)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as e:
                response = web.Response(status=e.status, text=e.text, content_type="application/json")
        if origin and origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, X-Namespace"
            response.headers["Vary"] = "Origin"
        return response

    async def decode(request: web.Request) -> web.Response:
        async with busy:
            payloads = await _payloads(request)
            try:
                decoded = await codec.decode(payloads)
            except Exception as e:  # an unknown key id or a tampered payload
                return web.json_response({"error": str(e)}, status=400)
            del payloads
            return _reply(decoded)

    async def encode(request: web.Request) -> web.Response:
        async with busy:
            return _reply(await codec.encode(await _payloads(request)))

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[cors_and_auth], client_max_size=MAX_REQUEST_BYTES)
    app.router.add_post("/decode", decode)
    app.router.add_post("/encode", encode)
    app.router.add_route("OPTIONS", "/{tail:.*}", health)
    app.router.add_get("/health", health)
    return app


def _host_name(request: web.Request) -> str:
    """The Host header's name, without its port."""
    host = (request.headers.get("Host") or "").strip().lower()
    if host.startswith("["):  # [::1]:8888
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _authorised(request: web.Request, token: str) -> bool:
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


async def _payloads(request: web.Request) -> list[Payload]:
    try:
        message = json_format.Parse(await request.read(), Payloads())
    except (json_format.ParseError, UnicodeDecodeError, ValueError) as e:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"not a payloads object: {e}"[:300]})) from None
    return list(message.payloads)


def _reply(payloads: list[Payload]) -> web.Response:
    body = json_format.MessageToJson(Payloads(payloads=payloads))
    return web.Response(text=body, content_type="application/json")


async def serve(
    codec: EncryptionCodec,
    token: str | None,
    origins: Iterable[str],
    host: str,
    port: int,
    host_names: Iterable[str] = (),
) -> web.AppRunner:
    """Start the codec endpoints on host:port; `await runner.cleanup()` stops them."""
    runner = web.AppRunner(make_app(codec, token, origins, host_names))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
