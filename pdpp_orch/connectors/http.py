"""A small aiohttp client that bundled connectors share to talk to their upstream.

    async with Upstream(retry_after_cap=5) as up:
        profile = await up.get_json("/gmail/v1/users/me/profile")

The base URL is `$PDPP_UPSTREAM_URL` (default http://127.0.0.1:8766). Requests are retried a
bounded number of times: 429/503 honour the upstream's `Retry-After` when it is at most
`retry_after_cap` seconds; a longer Retry-After is not waited out — the request fails at once
with `UpstreamError.retry_after` set, so the connector can hand the upstream's own signal to the
runtime (`retry_after_seconds`) instead of sleeping for a day. Other 5xx and connection errors
back off exponentially from `backoff` seconds. Any other status fails at once.

JSON bodies are parsed with orjson, falling back to the stdlib for integers beyond 64 bits, so
values like Gmail's 18446744073709551615 stay exact.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self

import aiohttp
import orjson

DEFAULT_URL = "http://127.0.0.1:8766"
RETRY_AFTER_STATUSES = frozenset({429, 503})


class UpstreamError(Exception):
    """A request that did not succeed within its retry budget."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        attempts: int,
        retry_after: float | None = None,
        body: Any = None,
    ):
        super().__init__(message)
        self.status = status
        self.attempts = attempts
        self.retry_after = retry_after
        self.body = body

    @property
    def permanent(self) -> bool:
        """The item is gone upstream; asking again will not help."""
        return self.status in (404, 410)

    def last_error(self) -> dict[str, Any]:
        """A compact, secret-free description for DETAIL_GAP.last_error and diagnostics."""
        err: dict[str, Any] = {"status": self.status, "attempts": self.attempts}
        if self.retry_after is not None:
            err["retry_after_seconds"] = self.retry_after
        if isinstance(self.body, dict) and "error" in self.body:
            err["error"] = self.body["error"]
        return err


def loads(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson refuses integers beyond 64 bits; the stdlib keeps them exact.
        return json.loads(raw)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or unparsable."""
    if not value:
        return None
    try:
        seconds = max(0.0, float(value))
    except ValueError:
        pass
    else:
        return int(seconds) if seconds.is_integer() else seconds  # "86400" stays 86400 on the wire
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class Upstream:
    """One keep-alive session to the upstream with a bounded retry policy."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        attempts: int = 3,
        backoff: float = 0.05,
        retry_after_cap: float = 5.0,
        timeout: float = 60.0,
        connections: int = 16,
    ):
        self.base_url = (base_url or os.environ.get("PDPP_UPSTREAM_URL") or DEFAULT_URL).rstrip("/")
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.retry_after_cap = retry_after_cap
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout,
            connector=aiohttp.TCPConnector(limit=self._connections),
            raise_for_status=False,
        )
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return loads(await self.get_bytes(path, params))

    async def get_text(self, path: str, params: dict[str, Any] | None = None) -> str:
        return (await self.get_bytes(path, params)).decode("utf-8")

    async def get_bytes(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        """GET `path` and return the body of a 2xx answer, retrying within the policy."""
        if self._session is None:
            raise RuntimeError("Upstream is used outside `async with`")
        url = self.base_url + path
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            try:
                async with self._session.get(url, params=query) as resp:
                    body = await resp.read()
                    if resp.status < 300:
                        return body
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as e:
                if last:
                    raise UpstreamError(f"GET {path}: {e!r}", status=None, attempts=attempt) from e
                await asyncio.sleep(delay)
                delay *= 2
                continue
            error = UpstreamError(
                f"GET {path}: HTTP {status}",
                status=status,
                attempts=attempt,
                retry_after=retry_after,
                body=_maybe_json(body),
            )
            if status in RETRY_AFTER_STATUSES and retry_after is not None:
                # The upstream said when to come back: wait only if that is soon.
                if retry_after > self.retry_after_cap or last:
                    raise error
                await asyncio.sleep(retry_after)
                continue
            if (status >= 500 or status == 429) and not last:
                await asyncio.sleep(delay)
                delay *= 2
                continue
            raise error
        raise AssertionError("unreachable")


def _maybe_json(body: bytes) -> Any:
    try:
        return loads(body)
    except ValueError:
        return body[:500].decode("utf-8", "replace")
