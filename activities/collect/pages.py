"""DETAIL_GAPS_PAGE_REQUEST: a connector draining its served gaps asks for the next page and
waits for it. The page comes from the run's own lease (what the recovery's budget granted), by
the reference's byte-budget rule, each gap at most once per attempt; it is answered from the
read loop, so it reflects every message before the request. An empty page means "no more"."""

from __future__ import annotations

from typing import Any

import orjson

from activities.collect.misses import InScope
from activities.collect.start import Served
from activities.collect.writer import Writer
from activities.process import ConnectorProcess
from pdpp_orch import protocol
from pdpp_orch.store import Store


class Pages:
    """The gap pages of one collect attempt."""

    def __init__(
        self,
        store: Store,
        connector: str,
        lease_id: str | None,
        served: Served | None,
        proc: ConnectorProcess,
        writer: Writer,
        in_scope: InScope,
    ):
        self.store = store
        self.connector = connector
        self.lease_id = lease_id
        self.served = served
        self.proc = proc
        self.writer = writer
        self.in_scope = in_scope

    async def request(self, msg: dict[str, Any], item: bytes, problem: protocol.LineError | None) -> None:
        """Answer one request. A malformed one is a violation, quarantined like any bad line, and
        answered with an empty page when it has a request id (the connector waits for it);
        without one nothing can answer it, so stdin is closed, which ends the reference SDK's
        wait."""
        request_id = msg.get("request_id")
        answerable = isinstance(request_id, str) and bool(request_id.strip())
        if problem is not None:
            self.writer.violate(problem.kind, problem.detail, item)
            if not answerable:
                self.proc.close_stdin()
                return
        assert isinstance(request_id, str)
        page = [] if problem is not None else self._page(msg, item)
        if page and self.lease_id is not None:
            await self.store.leases.mark_served(self.connector, self.lease_id, [g.gap_id for g in page])
        response = protocol.page_response(request_id, [g.start_entry() for g in page])
        await self.proc.send(orjson.dumps(response))

    def _page(self, msg: dict[str, Any], item: bytes) -> list[Any]:
        names = list(dict.fromkeys(msg.get("streams") or []))
        wanted = {s for s in names if self.in_scope(s, item)}  # a stream out of scope: a violation
        if self.served is None or (names and not wanted):
            # A forward run holds no lease: its gaps are their recoveries' to serve.
            return []
        return self.served.next_page(wanted or None, protocol.page_budget(msg.get("max_bytes")))
