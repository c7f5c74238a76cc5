"""What a run is asked to collect: streams, and a time range within them."""

from __future__ import annotations

from pydantic import BaseModel


class TimeRange(BaseModel):
    since: str | None = None
    until: str | None = None


class StreamScope(BaseModel):
    name: str
    time_range: TimeRange | None = None
