"""`pdpp-orch report`: "am I missing anything?", answered per connector and stream.

Assembled from the store (records held, committed checkpoints, open gaps, recent runs); the HTML
form is one self-contained file (inline CSS and SVG, no network).
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from pdpp_orch.models import Mode, RecoveryClass
from pdpp_orch.models.progress import owner_action_text
from pdpp_orch.store.reports import OpenGaps, ReportRows

OWNER_CLASSES = {RecoveryClass.OWNER_ACTION.value}


class GapSummary(BaseModel):
    reason: str
    recovery_class: str
    open: int
    next_retry: datetime | None
    estimated_cost: int | None = Field(description="None: not retried automatically")


class StreamReport(BaseModel):
    stream: str
    records_held: int
    records_deleted: int
    checkpoint_committed_at: datetime | None
    checkpoint_age_hours: float | None
    checkpoint_bytes: int | None
    coverage: str = Field(description="complete | partial | unproven | unknown (from the latest run)")
    gaps: list[GapSummary]
    waiting_on_owner: int


class RunPoint(BaseModel):
    run_id: str
    started_at: datetime
    status: str
    records_durable: int
    gaps_opened: int


class OwnerAsk(BaseModel):
    """A run waiting on its owner right now (the prompt itself is not in the report)."""

    run_id: str
    request_id: str
    kind: str
    expires_at: datetime


class OwnerNotice(BaseModel):
    """A connector asking its owner for help right now, without waiting (ASSISTANCE; the
    message itself is not in the report: `pdpp-orch runs` shows it)."""

    run_id: str
    assistance_request_id: str
    owner_action: str
    progress_posture: str
    expires_at: datetime | None


class ConnectorReport(BaseModel):
    connector: str
    missing_anything: bool
    streams: list[StreamReport]
    next_retry: datetime | None
    next_retry_cost: int
    waiting_on_owner: int = Field(
        description="owner-action gaps, runs waiting on the owner now, and notices asking them to act"
    )
    asks: list[OwnerAsk] = Field(default_factory=list)
    notices: list[OwnerNotice] = Field(default_factory=list)
    recent_runs: list[RunPoint]


def build(rows: ReportRows, cost_per_item: dict[str, int], now: datetime) -> list[ConnectorReport]:
    """Turn the store's rows into one report per connector."""
    connectors = sorted(
        {
            r.connector
            for part in (rows.records, rows.state, rows.gaps, rows.runs, rows.asks, rows.notices)
            for r in part
        }
    )
    latest: dict[tuple[str, str], str] = {}
    runs: dict[str, list[RunPoint]] = {}
    for r in rows.runs:
        o = r.outcome
        runs.setdefault(r.connector, []).append(
            RunPoint(
                run_id=r.run_id,
                started_at=r.started_at,
                status=r.status.value,
                records_durable=r.records_durable,
                gaps_opened=o.gaps_opened if o else 0,
            )
        )
        if o is not None and r.mode is Mode.FORWARD:
            for s in o.streams:  # runs come oldest first: the last one wins
                latest[(r.connector, s.stream)] = s.coverage
    return [_connector(c, rows, latest, runs.get(c, []), cost_per_item.get(c, 1), now) for c in connectors]


def _connector(
    c: str,
    rows: ReportRows,
    latest: dict[tuple[str, str], str],
    recent: list[RunPoint],
    cost_per_item: int,
    now: datetime,
) -> ConnectorReport:
    names = sorted(
        {r.stream for part in (rows.records, rows.state, rows.gaps) for r in part if r.connector == c}
    )
    streams = [_stream(c, st, rows, latest, cost_per_item, now) for st in names]
    planned = [g for s in streams for g in s.gaps if g.estimated_cost is not None]
    asks = [
        OwnerAsk(run_id=a.run_id, request_id=a.request_id, kind=a.kind, expires_at=a.expires_at)
        for a in rows.asks
        if a.connector == c
    ]
    notices = [
        OwnerNotice(
            run_id=n.run_id,
            assistance_request_id=n.assistance_id,
            owner_action=n.owner_action,
            progress_posture=n.progress_posture,
            expires_at=n.expires_at,
        )
        for n in rows.notices
        if n.connector == c
    ]
    acting = [n for n in notices if n.owner_action != "none"]
    return ConnectorReport(
        connector=c,
        missing_anything=bool(asks or acting)
        or any(s.gaps or s.coverage in ("partial", "unproven") for s in streams),
        streams=streams,
        next_retry=min((g.next_retry for g in planned if g.next_retry), default=None),
        next_retry_cost=sum(g.estimated_cost or 0 for g in planned),
        waiting_on_owner=sum(s.waiting_on_owner for s in streams) + len(asks) + len(acting),
        asks=asks,
        notices=notices,
        recent_runs=recent,
    )


def _stream(
    c: str, st: str, rows: ReportRows, latest: dict[tuple[str, str], str], cost_per_item: int, now: datetime
) -> StreamReport:
    rec = next((r for r in rows.records if (r.connector, r.stream) == (c, st)), None)
    state = next((r for r in rows.state if (r.connector, r.stream) == (c, st)), None)
    gaps = _gaps([g for g in rows.gaps if (g.connector, g.stream) == (c, st)], cost_per_item)
    committed = state.committed_at if state else None
    return StreamReport(
        stream=st,
        records_held=rec.held if rec else 0,
        records_deleted=rec.deleted if rec else 0,
        checkpoint_committed_at=committed,
        checkpoint_age_hours=round((now - committed).total_seconds() / 3600, 1) if committed else None,
        checkpoint_bytes=state.cursor_bytes if state else None,
        coverage=latest.get((c, st), "unknown"),
        gaps=gaps,
        waiting_on_owner=sum(g.open for g in gaps if g.recovery_class in OWNER_CLASSES),
    )


def _gaps(rows: list[OpenGaps], cost_per_item: int) -> list[GapSummary]:
    merged: dict[tuple[str, str], GapSummary] = {}
    for g in rows:
        key = (g.reason, g.recovery_class.value)
        retried = g.recovery_class.runtime_retryable
        cur = merged.get(key)
        if cur is None:
            cur = merged[key] = GapSummary(
                reason=g.reason,
                recovery_class=g.recovery_class.value,
                open=0,
                next_retry=None,
                estimated_cost=0 if retried else None,
            )
        cur.open += g.n
        if retried and cur.estimated_cost is not None:
            cur.estimated_cost += g.n * cost_per_item
        if g.next_retry and retried:
            cur.next_retry = min(cur.next_retry or g.next_retry, g.next_retry)
    return sorted(merged.values(), key=lambda x: (-x.open, x.reason))


def to_json(reports: list[ConnectorReport]) -> str:
    return json.dumps([r.model_dump(mode="json") for r in reports], indent=2)


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1d232a;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;margin:.6rem 0}th,td{text-align:left;padding:.3rem .5rem;
border-bottom:1px solid #eee;vertical-align:top}th{background:#f6f7f9}td.n{text-align:right}
.ok{color:#1b7f3b}.warn{color:#a86400}.bad{color:#b3261e}.muted{color:#6b7280}
svg text{font:11px system-ui,sans-serif;fill:#444}
"""


def to_html(reports: list[ConnectorReport], now: datetime) -> str:
    """One self-contained HTML page with the same facts and a small chart per connector."""
    e = html.escape
    parts = [
        "<!doctype html><html lang=en><meta charset=utf-8>",
        "<title>pdpp-orchestrator · am I missing anything?</title>",
        f"<style>{_CSS}</style><h1>Am I missing anything?</h1>",
        f"<p class=muted>Report of {now:%Y-%m-%d %H:%M} UTC · {len(reports)} connector(s)</p>",
    ]
    for r in reports:
        verdict = (
            "<span class=ok>nothing missing</span>"
            if not r.missing_anything
            else "<span class=warn>something is missing</span>"
        )
        retry = (
            f"next retry {r.next_retry:%Y-%m-%d %H:%M} UTC, {r.next_retry_cost:,} units"
            if r.next_retry
            else "no retry planned"
        )
        owner = (
            f" · <span class=bad>{r.waiting_on_owner:,} waiting on you</span>" if r.waiting_on_owner else ""
        )
        parts.append(f"<h2>{e(r.connector)}</h2><p>{verdict} · {retry}{owner}</p>")
        parts.extend(
            f"<p class=bad>run {e(a.run_id)} waits for your {e(a.kind)}"
            f" until {a.expires_at:%Y-%m-%d %H:%M} UTC:"
            f" <code>pdpp-orch respond {e(a.run_id)} --data -</code></p>"
            for a in r.asks
        )
        parts.extend(
            f"<p class=bad>run {e(a.run_id)} asks you to {e(owner_action_text(a.owner_action))}"
            " (<code>pdpp-orch runs</code> shows its message)</p>"
            for a in r.notices
        )
        parts.append(
            "<table><tr><th>stream</th><th>records held</th><th>checkpoint</th><th>coverage</th>"
            "<th>open gaps</th></tr>"
        )
        for s in r.streams:
            cp = (
                f"{s.checkpoint_committed_at:%Y-%m-%d %H:%M} "
                f"({s.checkpoint_age_hours} h ago, {s.checkpoint_bytes:,} B)"
                if s.checkpoint_committed_at
                else "<span class=warn>none committed</span>"
            )
            gaps = (
                "<br>".join(
                    f"{g.open:,} × {e(g.reason)} <span class=muted>({e(g.recovery_class)}"
                    + (f", retry {g.next_retry:%m-%d %H:%M}" if g.next_retry else "")
                    + (", not retried automatically" if g.estimated_cost is None else "")
                    + ")</span>"
                    for g in s.gaps
                )
                or "<span class=ok>none</span>"
            )
            cls = {"complete": "ok", "partial": "warn", "unproven": "bad"}.get(s.coverage, "muted")
            parts.append(
                f"<tr><td>{e(s.stream)}</td><td class=n>{s.records_held:,}</td><td>{cp}</td>"
                f"<td class={cls}>{e(s.coverage)}</td><td>{gaps}</td></tr>"
            )
        parts.append("</table>")
        parts.append(_chart(r.recent_runs))
    parts.append("</html>")
    return "".join(parts)


def _chart(runs: list[RunPoint]) -> str:
    """Records durable (bars) and gaps opened (red ticks) per recent run, as inline SVG."""
    if not runs:
        return "<p class=muted>no runs yet</p>"
    w, h, pad = 36, 120, 24
    top = max(max(r.records_durable for r in runs), 1)
    gtop = max(max(r.gaps_opened for r in runs), 1)
    bars = []
    for i, r in enumerate(runs):
        x = pad + i * w
        bh = (h - 20) * r.records_durable / top
        gh = (h - 20) * r.gaps_opened / gtop
        title = html.escape(f"{r.run_id}: {r.status}, {r.records_durable:,} durable, {r.gaps_opened:,} gaps")
        bars.append(
            f"<g><title>{title}</title>"
            f"<rect x={x} y={h - bh:.1f} width={w - 10} height={bh:.1f} fill=#5b8def />"
            + (
                f"<rect x={x + w - 14} y={h - gh:.1f} width=4 height={gh:.1f} fill=#b3261e />"
                if r.gaps_opened
                else ""
            )
            + f"<text x={x} y={h + 14}>{r.started_at:%m-%d}</text></g>"
        )
    width = pad * 2 + w * len(runs)
    return (
        f"<p class=muted>Recent runs: records durable (blue, max {top:,}) "
        f"and gaps opened (red, max {gtop:,})</p>"
        f"<svg width={width} height={h + 20} role=img aria-label='records and gaps per run'>"
        f"{''.join(bars)}</svg>"
    )


def generated_at() -> datetime:
    return datetime.now(UTC)
