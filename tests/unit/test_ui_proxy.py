"""The dev stack's UI proxy passes a request through as the browser sent it: the web UI renders
a workflow's summary and details from `/render?content=…`, markdown whose list items are lines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest
from aiohttp import ClientSession, web
from yarl import URL

from pdpp_orch.ui_proxy import make_app

DETAILS = "**partially_completed** · reason `records_skipped`\n\n- records durable: 0\n- next: retry"


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def proxied() -> AsyncIterator[str]:
    """A proxy in front of an upstream that answers with the query it received."""

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"content": request.query.get("content"), "raw": request.raw_path})

    upstream = web.Application()
    upstream.router.add_get("/render", echo)
    up, up_url = await _serve(upstream)
    proxy, proxy_url = await _serve(make_app(up_url))
    try:
        yield proxy_url
    finally:
        await proxy.cleanup()
        await up.cleanup()


async def test_the_proxy_keeps_the_newlines_of_a_rendered_markdown_field(proxied: str) -> None:
    path = f"/render?content={quote(DETAILS)}&theme=light"
    async with ClientSession() as session, session.get(URL(f"{proxied}{path}", encoded=True)) as answer:
        seen = await answer.json()
    # Exactly as sent. With its newlines lost, the details rendered as one paragraph:
    # "`records_skipped`- records durable: 0- next: retry".
    assert seen == {"content": DETAILS, "raw": path}
