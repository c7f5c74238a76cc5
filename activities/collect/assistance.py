"""ASSISTANCE and ASSISTANCE_STATUS: a connector tells its owner what would help (approve a
sign-in elsewhere, operate a browser) and goes on; nothing is written back and the run never
waits for it. The notice is kept in PostgreSQL with its message; the workflow is told its id and
enums only, so the run's details show that the owner is asked something."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pydantic import BaseModel

from activities.collect.misses import InScope
from activities.collect.writer import Writer
from pdpp_orch.models import AssistanceNotice
from pdpp_orch.store import Store

Notify = Callable[[str, BaseModel], Awaitable[None]]
MAX_TIMEOUT_S = 7 * 24 * 3600.0
# Each notice opened or ended is a signal in the run's history: an attempt tells the workflow of
# at most this many (all are kept in PostgreSQL, and `runs` shows them).
MAX_NOTICES = 20
# What an input schema or an attachment may say that the owner's display must not show: the
# reference's rules (example values, and anything that looks like a secret).
_REDACTED_KEY = re.compile(r"^(?:default|example|examples|const|enum)$", re.IGNORECASE)
_SENSITIVE_KEY = re.compile(r"password|passwd|secret|token|bearer|cookie|credential|otp|qr", re.IGNORECASE)
_SAFE_REF = re.compile(r"[A-Za-z0-9._:-]{1,200}")


def redact_schema(value: Any, depth: int = 0) -> Any:
    """An input schema without example values or secret-looking entries, bounded in size."""
    if depth > 8:
        return "[REDACTED]"
    if isinstance(value, list):
        return [redact_schema(v, depth + 1) for v in value[:50]]
    if isinstance(value, str):
        return value[:200]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, v in value.items():
        if _REDACTED_KEY.match(key) or (_SENSITIVE_KEY.search(key) and not isinstance(v, dict)):
            out[key] = "[REDACTED]"
        else:
            out[key] = redact_schema(v, depth + 1)
    return out


def attachment(a: dict[str, Any]) -> dict[str, Any]:
    """What is kept of an attachment: its kind, role, label, status, and an opaque reference
    (never a URL, which may carry authority)."""
    out: dict[str, Any] = {"kind": a.get("kind")}
    for field, sources, limit in (
        ("role", ("role",), 80),
        ("label", ("label", "title"), 160),
        ("status", ("status", "availability"), 80),
    ):
        text = next((a[s] for s in sources if isinstance(a.get(s), str) and a[s].strip()), None)
        if text:
            out[field] = text[:limit]
    ref = next((a[s] for s in ("ref", "id", "surface_id") if isinstance(a.get(s), str)), None)
    if ref and _SAFE_REF.fullmatch(ref):
        out["ref"] = ref
    return out


class Assistance:
    """The owner assistance of one collect attempt."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        connector: str,
        attempt: int,
        writer: Writer,
        in_scope: InScope,
        notify: Notify,
    ):
        self.store = store
        self.run_id = run_id
        self.connector = connector
        self.attempt = attempt
        self.writer = writer
        self.in_scope = in_scope
        self.notify = notify
        self.open: dict[str, AssistanceNotice] = {}
        self._assigned = 0
        self._shown: set[str] = set()  # the notices the workflow was told of

    async def handle(self, msg: dict[str, Any], item: bytes) -> None:
        """ASSISTANCE or ASSISTANCE_STATUS, their fields already checked."""
        if msg["type"] == "ASSISTANCE":
            await self.request(msg, item)
        else:
            await self.status(msg, item)

    async def request(self, msg: dict[str, Any], item: bytes) -> None:
        """ASSISTANCE."""
        stream = msg.get("stream")
        if stream is not None and not self.in_scope(stream, item):
            return
        aid = msg.get("assistance_request_id")
        if aid is None:
            self._assigned += 1
            aid = f"asst_{int(time.time() * 1000)}_{self._assigned}"
        if aid in self.open:
            self.writer.violate(
                "schema_invalid", "duplicate ASSISTANCE.assistance_request_id (still open)", item
            )
            return
        timeout = msg.get("timeout_seconds")
        expires = (
            datetime.now(UTC) + timedelta(seconds=min(float(timeout), MAX_TIMEOUT_S)) if timeout else None
        )
        said = self.writer.tally.said
        detail = {
            "kind": msg.get("kind"),
            "reason_code": msg.get("reason_code"),
            "attachments": [attachment(a) for a in msg.get("attachments") or []],
            "input_schema": redact_schema(msg["input_schema"]) if msg.get("input_schema") else None,
        }
        fields = {
            "message": said(str(msg["message"]), 2000),
            "owner_action": msg["owner_action"],
            "progress_posture": msg["progress_posture"],
            "sensitivity": msg.get("sensitivity"),
            "stream": stream,
        }
        detail_json = self.writer.tally.redact(orjson.dumps(detail).decode())
        await self.store.assistance.open(
            self.run_id, self.connector, self.attempt, aid, fields, detail_json, expires
        )
        notice = AssistanceNotice(
            assistance_id=said(aid, 128),
            owner_action=msg["owner_action"],
            progress_posture=msg["progress_posture"],
            expires_at=expires,
        )
        self.open[aid] = notice
        await self._notify(notice)

    async def status(self, msg: dict[str, Any], item: bytes) -> None:
        """ASSISTANCE_STATUS: how a notice of this attempt ended."""
        aid = msg["assistance_request_id"]
        notice = self.open.pop(aid, None)
        if notice is None:
            self.writer.violate(
                "schema_invalid", "ASSISTANCE_STATUS for an assistance_request_id not open", item
            )
            return
        message = msg.get("message")
        await self.store.assistance.close(
            self.run_id, aid, msg["status"], self.writer.tally.said(str(message), 2000) if message else None
        )
        await self._notify(notice.model_copy(update={"status": msg["status"]}))

    async def _notify(self, notice: AssistanceNotice) -> None:
        """Tell the workflow of a notice opened (the first MAX_NOTICES of the attempt) or of
        how one it was told of ended."""
        aid = notice.assistance_id
        if notice.status == "open" and len(self._shown) < MAX_NOTICES:
            self._shown.add(aid)
        if aid in self._shown:
            await self.notify("assistance_changed", notice)

    async def end(self, succeeded: bool) -> None:
        """The attempt is over: what is still open is resolved if the run succeeded, else
        cancelled (expired if its own timeout had passed). A retried attempt starts afresh."""
        self.open.clear()
        await self.store.assistance.close_run(self.run_id, "resolved" if succeeded else "cancelled")
