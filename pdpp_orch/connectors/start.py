"""What the runtime asked a connector for: accessors over its START message."""

from __future__ import annotations

from typing import Any


class StartView:
    """Scope, state, collection mode and served detail gaps of `start_message` (START)."""

    start_message: dict[str, Any]

    def streams(self) -> list[str]:
        """The names of the streams in scope, in START's order."""
        return [s["name"] for s in self.start_message.get("scope", {}).get("streams", [])]

    def cursor(self, stream: str) -> Any:
        """The cursor START carries for `stream` (None on a first run)."""
        return (self.start_message.get("state") or {}).get(stream)

    def time_range(self, stream: str) -> dict[str, str] | None:
        """The time range START's scope sets for `stream`, if any."""
        tr: dict[str, str] | None = self.scope(stream).get("time_range")
        return tr

    def scope(self, stream: str) -> dict[str, Any]:
        """The START scope entry of `stream` (empty when the stream is not in scope)."""
        for s in self.start_message.get("scope", {}).get("streams", []):
            if s.get("name") == stream:
                entry: dict[str, Any] = s
                return entry
        return {}

    def in_scope(self, stream: str) -> bool:
        """Whether `stream` is in scope."""
        return stream in self.streams()

    def resources(self, stream: str) -> list[str] | None:
        """The only resources of `stream` to collect, or None for all of them."""
        res: list[str] | None = self.scope(stream).get("resources")
        return None if res is None else [str(r) for r in res]

    def exclude_resources(self, stream: str) -> list[str]:
        """Resources of `stream` not to collect (a runtime extension to the protocol)."""
        return [str(r) for r in self.scope(stream).get("exclude_resources") or []]

    def wants_resource(self, stream: str, resource_id: str) -> bool:
        """Whether `resource_id` of `stream` is selected by `resources` and `exclude_resources`."""
        only = self.resources(stream)
        if only is not None and resource_id not in only:
            return False
        return resource_id not in self.exclude_resources(stream)

    def collection_mode(self) -> str:
        """`incremental` (the default) or `full_refresh`."""
        return str(self.start_message.get("collection_mode") or "incremental")

    def recovery_only(self) -> bool:
        """True when the runtime asks only to drain the served detail gaps, with no forward walk."""
        return bool(self.start_message.get("recovery_only"))

    def detail_gaps(self, stream: str | None = None) -> list[dict[str, Any]]:
        """The detail gaps the runtime served for recovery, optionally those of one stream."""
        gaps: list[dict[str, Any]] = self.start_message.get("detail_gaps") or []
        return [g for g in gaps if stream is None or g.get("stream") == stream]
