"""The report as one self-contained HTML page (inline CSS and SVG, nothing fetched)."""

from __future__ import annotations

import html

from pdpp_orch.models.progress import owner_action_text
from pdpp_orch.report.build import fate_lines
from pdpp_orch.report.model import ConnectorReport, RunPoint, Severity, StreamReport
from pdpp_orch.times import utc
from pdpp_orch.words import visible

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1d232a;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;margin:.6rem 0}th,td{text-align:left;padding:.3rem .5rem;
border-bottom:1px solid #eee;vertical-align:top}th{background:#f6f7f9}td.n{text-align:right}
.ok{color:#1b7f3b}.warn{color:#a86400}.bad{color:#b3261e}.muted{color:#6b7280}
svg text{font:11px system-ui,sans-serif;fill:#444}svg line{stroke:#999}
"""
TONE = {Severity.FAILING: "bad", Severity.WAITING_ON_YOU: "bad", Severity.OK: "ok"}


def escape(text: str) -> str:
    """Text for the page: markup escaped, control characters shown (a connector's words)."""
    return html.escape(visible(text))


def to_html(reports: list[ConnectorReport], generated: str) -> str:
    """One page: what needs attention, worst first, then each connector with a chart."""
    e = escape
    parts = [
        "<!doctype html><html lang=en><meta charset=utf-8>",
        "<title>pdpp-orchestrator · am I missing anything?</title>",
        f"<style>{CSS}</style><h1>Am I missing anything?</h1>",
        f"<p class=muted>Report of {e(generated)} · {len(reports)} connector(s)</p>",
        _attention(reports),
    ]
    for r in reports:
        parts.append(
            f"<h2>{e(r.connector)}</h2><p class={TONE.get(r.severity, 'warn')}>{_code(r.verdict)}</p>"
        )
        fates = fate_lines(r)
        if fates:
            parts.append("<ul>" + "".join(f"<li>{_code(x)}</li>" for x in fates) + "</ul>")
        parts.extend(
            f"<p class=bad>run {e(a.run_id)} waits for your {e(a.kind)}"
            + (f" (“{e(a.message)}”)" if a.message else "")
            + f" until {utc(a.expires_at)}:"
            f" <code>pdpp-orch respond {e(a.run_id)} --data -</code></p>"
            for a in r.asks
        )
        parts.extend(
            f"<p class=bad>run {e(a.run_id)} asks you to {e(owner_action_text(a.owner_action))}"
            " (<code>pdpp-orch runs</code> shows its message)</p>"
            for a in r.notices
        )
        parts.append(_streams(r.streams) if r.streams else "<p>no stream has records or checkpoints yet</p>")
        parts.append(_chart(r.recent_runs))
    parts.append("</html>")
    return "".join(parts)


def _code(text: str) -> str:
    """Escaped, with each `command` set as code."""
    parts = escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _attention(reports: list[ConnectorReport]) -> str:
    worst = sorted(
        (r for r in reports if r.severity is not Severity.OK), key=lambda r: (r.severity, r.connector)
    )
    if not worst:
        return "<p class=ok>Nothing needs your attention.</p>"
    items = "".join(
        f"<li class={TONE.get(r.severity, 'warn')}><b>{escape(r.connector)}</b>: {_code(r.verdict)}</li>"
        for r in worst
    )
    return f"<h2>Needs attention</h2><ol>{items}</ol>"


def _streams(streams: list[StreamReport]) -> str:
    e = escape
    rows = [
        "<table><tr><th>stream</th><th>records held</th><th>missing</th><th>checkpoint</th>"
        "<th>coverage</th><th>gaps</th></tr>"
    ]
    for s in streams:
        cp = (
            f"{utc(s.checkpoint_committed_at)} ({s.checkpoint_age_hours} h ago, {s.checkpoint_bytes:,} B)"
            if s.checkpoint_committed_at
            else "<span class=warn>none committed</span>"
        )
        gaps = (
            "<br>".join(
                f"{g.open:,} open × {e(g.reason)} <span class=muted>({e(g.recovery_class)}"
                + (f", {g.recovered:,} recovered" if g.recovered else "")
                + (f", {g.terminal:,} terminal" if g.terminal else "")
                + (", not retried automatically" if g.estimated_cost is None and g.open else "")
                + ")</span>"
                for g in s.gaps
            )
            or "<span class=ok>none</span>"
        )
        cls = {"complete": "ok", "recovered": "ok", "partial": "warn", "unproven": "bad"}.get(
            s.coverage, "muted"
        )
        miss = f"{s.records_missing_estimate:,}" if s.records_missing_estimate else ""
        rows.append(
            f"<tr><td>{e(s.stream)}</td><td class=n>{s.records_held:,}</td><td class=n>{miss}</td>"
            f"<td>{cp}</td>"
            f"<td class={cls}>{e(s.coverage)}</td><td>{gaps}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _chart(runs: list[RunPoint]) -> str:
    """Records durable (bars, left axis) and gaps opened (red ticks) per recent run, each
    labelled with its start (date and time), as inline SVG."""
    if not runs:
        return "<p class=muted>no runs yet</p>"
    w, h, left, bottom = 46, 120, 64, 34
    top = max(max(r.records_durable for r in runs), 1)
    gtop = max(max(r.gaps_opened for r in runs), 1)
    bars = []
    for i, r in enumerate(runs):
        x = left + 8 + i * w
        bh = (h - 10) * r.records_durable / top
        gh = (h - 10) * r.gaps_opened / gtop
        title = escape(f"{r.run_id}: {r.status}, {r.records_durable:,} durable, {r.gaps_opened:,} gaps")
        bars.append(
            f"<g><title>{title}</title>"
            f"<rect x={x} y={h - bh:.1f} width={w - 16} height={bh:.1f} fill=#5b8def />"
            + (
                f"<rect x={x + w - 14} y={h - gh:.1f} width=4 height={gh:.1f} fill=#b3261e />"
                if r.gaps_opened
                else ""
            )
            + f"<text x={x} y={h + 14}>{r.started_at:%m-%d}</text>"
            f"<text x={x} y={h + 27}>{r.started_at:%H:%M}</text></g>"
        )
    width = left + 16 + w * len(runs)
    axes = (
        f"<line x1={left} y1=4 x2={left} y2={h} /><line x1={left} y1={h} x2={width} y2={h} />"
        f"<text x=0 y=12>{top:,}</text><text x=0 y={h}>0</text>"
        f"<text x=0 y={h + 27}>start (UTC)</text>"
    )
    return (
        f"<p class=muted>Recent runs: records durable per run (blue bars, axis 0 – {top:,}) and gaps opened "
        f"(red, up to {gtop:,}); each run at its start</p>"
        f"<svg width={width} height={h + bottom} role=img aria-label='records durable and gaps per run'>"
        f"{axes}{''.join(bars)}</svg>"
    )
