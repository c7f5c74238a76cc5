"""The dev stack's web UI, served through a loopback proxy that gives it our columns.

Temporal's web UI (2.54) lists every run that ended as Completed, partial or not, and shows a
search attribute in its list only once a person has added the column in each browser (its
choice lives in the browser's localStorage; no server setting, flag or URL sets it). This
proxy passes the UI through unchanged, except that its HTML pages start with a script that
gives a browser which has not chosen its columns for the namespace ours: Temporal's status,
then `PdppRunStatus` beside it. A choice made in the browser's *Configure Columns* stays.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from aiohttp import ClientConnectionError, ClientSession, ClientTimeout, web
from multidict import CIMultiDict
from yarl import URL

# Where the UI keeps its columns, per namespace (temporalio/ui configurable-table-columns.ts).
COLUMNS_KEY = "namespace-workflow-table-columns"
# What a run is, first: Temporal's status, ours beside it, then which connector and what is
# missing; the Run ID column (a second id) makes room for them.
COLUMNS = [
    "Status",
    "PdppRunStatus",
    "Workflow ID",
    "PdppConnector",
    "PdppRecordsDurable",
    "PdppGapsOpen",
    "Type",
    "Start",
    "End",
]
STOP_S = 5.0
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
        "accept-encoding",
    }
)


def columns_script() -> str:
    """Sets our columns for the page's namespace unless the browser has some for it."""
    cols = json.dumps([{"label": c} for c in COLUMNS])
    return (
        "<script>(function(){try{"
        f"var k={json.dumps(COLUMNS_KEY)},m=location.pathname.match(/\\/namespaces\\/([^/]+)/),"
        "n=m?decodeURIComponent(m[1]):'default',s=JSON.parse(localStorage.getItem(k)||'{}');"
        f"if(!s[n]||!s[n].length){{s[n]={cols};localStorage.setItem(k,JSON.stringify(s));}}"
        "}catch(e){}})();</script>"
    )


def with_columns(html: str) -> str:
    """The page with the script first in its head: before the page's content security policy
    (a meta element, which governs only what follows it) and before the UI's own scripts."""
    head = html.find("<head>")
    if head < 0:
        return html
    at = head + len("<head>")
    return html[:at] + columns_script() + html[at:]


def _headers(headers: Any) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _HOP)


def _upstream_headers(headers: Any) -> CIMultiDict[str]:
    # Uncompressed from the UI (on loopback), so pages can be read and everything passed as it is.
    out = _headers(headers)
    out["Accept-Encoding"] = "identity"
    return out


def make_app(upstream: str) -> web.Application:
    """Everything to `upstream` and back; HTML pages with `with_columns`."""
    session: list[ClientSession] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        try:
            return await _pass(request)
        except ClientConnectionError as e:  # the UI not up yet, or gone with its server
            return web.Response(status=502, text=f"Temporal's web UI does not answer: {e}")

    async def _pass(request: web.Request) -> web.StreamResponse:
        # The path and query as the browser sent them: decoded and encoded again, the newlines
        # of `/render?content=…` (a workflow's details as markdown) were lost on the way.
        async with session[0].request(
            request.method,
            URL(upstream + request.raw_path, encoded=True),
            headers=_upstream_headers(request.headers),
            data=await request.read(),
            allow_redirects=False,
        ) as answer:
            headers = _headers(answer.headers)
            if answer.content_type == "text/html":
                page = with_columns(await answer.text())
                return web.Response(status=answer.status, headers=headers, text=page)
            response = web.StreamResponse(status=answer.status, headers=headers)
            await response.prepare(request)
            async for chunk in answer.content.iter_chunked(1 << 16):
                await response.write(chunk)
            await response.write_eof()
            return response

    async def open_session(_: web.Application) -> Any:
        # No total timeout: the UI's long polls take as long as the server makes them.
        session.append(
            ClientSession(timeout=ClientTimeout(total=None, sock_connect=10), auto_decompress=False)
        )
        yield
        await session[0].close()

    app = web.Application(client_max_size=64 << 20)
    app.cleanup_ctx.append(open_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


class UiProxy:
    """The proxy on its own event loop in a daemon thread, so a synchronous DevStack can start
    and stop it (and it ends with the process however that ends)."""

    def __init__(self, port: int, upstream: str):
        self.port = port
        self.upstream = upstream
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ui-proxy", daemon=True)
        self._runner: web.AppRunner | None = None

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(STOP_S)

    async def _serve(self) -> None:
        # A browser's open requests (the UI polls) must not hold up the stack's stop.
        self._runner = web.AppRunner(make_app(self.upstream), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(STOP_S)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(STOP_S)
        if not self._thread.is_alive():
            self._loop.close()
