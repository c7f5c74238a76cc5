"""`pdpp-orch codec-server`: decrypts payloads for the Temporal web UI and CLI, for people
allowed to see them (Temporal's remote codec protocol: POST /decode and /encode with
`{"payloads": [...]}` in proto JSON)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from pdpp_orch.codec import EncryptionCodec

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(codec: EncryptionCodec, token: str | None, origins: Iterable[str]) -> web.Application:
    """The codec endpoints. With `token`, every request but /health must carry
    `Authorization: Bearer TOKEN`; `origins` may call from a browser (CORS, credentials
    allowed)."""
    allowed = set(origins)

    @web.middleware
    async def cors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204)
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
        payloads = await _payloads(request)
        try:
            decoded = await codec.decode(payloads)
        except Exception as e:  # an unknown key id or a tampered payload
            return web.json_response({"error": str(e)}, status=400)
        return _reply(decoded)

    async def encode(request: web.Request) -> web.Response:
        return _reply(await codec.encode(await _payloads(request)))

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[cors_and_auth], client_max_size=64 << 20)
    app.router.add_post("/decode", decode)
    app.router.add_post("/encode", encode)
    app.router.add_route("OPTIONS", "/{tail:.*}", health)
    app.router.add_get("/health", health)
    return app


def _authorised(request: web.Request, token: str) -> bool:
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


async def _payloads(request: web.Request) -> list[Payload]:
    try:
        body = await request.text()
        message = json_format.Parse(body, Payloads())
    except (json_format.ParseError, UnicodeDecodeError, ValueError) as e:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"not a payloads object: {e}"[:300]})) from None
    return list(message.payloads)


def _reply(payloads: list[Payload]) -> web.Response:
    body = json_format.MessageToJson(Payloads(payloads=payloads))
    return web.Response(text=body, content_type="application/json")


async def serve(
    codec: EncryptionCodec, token: str | None, origins: Iterable[str], host: str, port: int
) -> web.AppRunner:
    """Start the codec endpoints on host:port; `await runner.cleanup()` stops them."""
    runner = web.AppRunner(make_app(codec, token, origins))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
