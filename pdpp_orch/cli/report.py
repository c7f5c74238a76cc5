"""`report [NAME]`: am I missing anything?"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from temporalio.client import Client

from pdpp_orch import report as rp
from pdpp_orch.cli.common import ConnectorsOpt, DataDirOpt, JsonOpt, err, out, run_async, servers, settings
from pdpp_orch.cli.complete import connector_names
from pdpp_orch.cli.show import note, temporal
from pdpp_orch.control import UsageError
from pdpp_orch.control.present import connector_present
from pdpp_orch.control.stack import Stack, command_store, known_connector, registry
from pdpp_orch.models.progress import owner_action_text
from pdpp_orch.present.model import Present
from pdpp_orch.report.model import GapSummary
from pdpp_orch.settings import Settings
from pdpp_orch.store import ReportRows, Store
from pdpp_orch.times import utc

COLORS = {rp.Severity.FAILING: "red", rp.Severity.WAITING_ON_YOU: "red", rp.Severity.OK: "green"}


def report(
    name: Annotated[
        str | None, typer.Argument(help="Only this connector.", autocompletion=connector_names)
    ] = None,
    as_json: JsonOpt = False,
    html_file: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML report to this file.")
    ] = None,
    connectors: ConnectorsOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Am I missing anything? What needs attention, worst first; then per connector and stream:
    records held and known missing, the last committed checkpoint and its age, coverage, gaps
    (open, recovered, terminal), the next retry and its cost, and what waits on the owner."""
    run_async(_report(settings(data_dir, connectors), name, as_json, html_file))


async def _presents(
    s: Settings, found: Stack, store: Store, client: Client | None, rows: ReportRows
) -> dict[str, Present]:
    """Where each connector stands now (pdpp_orch.present): since its latest forward run."""
    names = {r.connector for part in (rows.records, rows.state, rows.gaps, rows.runs) for r in part}
    out = {}
    for c in sorted(names):
        latest = rp.latest_forward(rows, c)
        since = latest.started_at if latest else None
        out[c] = await connector_present(store, client, c, since, datetime.now(UTC), note(s, found, c))
    return out


async def _report(s: Settings, name: str | None, as_json: bool, html_file: Path | None) -> int:
    found = servers(s)
    client = await temporal(found, s.temporal_namespace)
    async with command_store(found.database_url) as store:
        if name is not None:
            await known_connector(store, name, lambda: registry(s, found))
        rows = await store.reports.rows(name)
        presents = await _presents(s, found, store, client, rows)
    costs = {n: e.budget.cost_per_item for n, e in registry(s, found).entries.items()}
    now = rp.generated_at()
    reports = rp.build(rows, costs, presents, now)
    if name is not None and not reports:
        raise UsageError(f"nothing recorded for connector {name!r}")
    if html_file is not None:
        page = rp.to_html(reports, utc(now))
        await asyncio.to_thread(html_file.write_text, page, encoding="utf-8")
    if as_json:
        print(rp.to_json(reports))
        return 0
    _print_attention(reports)
    for r in reports:
        _print_connector(r)
    if html_file is not None:
        err.print(f"wrote {html_file}")
    return 0


def _print_attention(reports: list[rp.ConnectorReport]) -> None:
    worst = sorted(
        (r for r in reports if r.severity is not rp.Severity.OK), key=lambda r: (r.severity, r.connector)
    )
    if not worst:
        out.print("[green]nothing needs your attention[/]")
        return
    out.print("[bold]needs attention[/] (worst first):")
    for r in worst:
        out.print(
            f"  [{COLORS.get(r.severity, 'yellow')}]{escape(r.connector)}[/]: {escape(r.verdict)}",
            highlight=False,
        )
    out.print()


def _print_connector(r: rp.ConnectorReport) -> None:
    color = COLORS.get(r.severity, "yellow")
    out.print(f"[bold]{escape(r.connector)}[/]: [{color}]{escape(r.verdict)}[/]", highlight=False)
    if r.running_run:
        out.print(f"  a run is in progress: pdpp-orch watch {r.running_run}", highlight=False)
    for line in rp.fate_lines(r):
        out.print(f"  {escape(line)}", highlight=False)
    for a in r.asks:
        prompt = f" ({escape(a.message)})" if a.message else ""
        out.print(
            f"  [red]run {a.run_id} waits for your {a.kind}[/]{prompt}"
            f" until {utc(a.expires_at)}: pdpp-orch respond {a.run_id} --data -",
            highlight=False,
        )
    for n in r.notices:
        out.print(
            f"  [red]run {n.run_id} asks you to {owner_action_text(n.owner_action)}[/]"
            " (pdpp-orch runs shows its message)",
            highlight=False,
        )
    if not r.streams:
        out.print("  no stream has records or checkpoints yet")
        return
    t = Table("stream", "records held", "missing", "checkpoint", "age (h)", "coverage", "gaps")
    for st in r.streams:
        t.add_row(
            escape(st.stream),
            f"{st.records_held:,}",
            f"{st.records_missing_estimate:,}" if st.records_missing_estimate else "",
            utc(st.checkpoint_committed_at) if st.checkpoint_committed_at else "none",
            "" if st.checkpoint_age_hours is None else str(st.checkpoint_age_hours),
            st.coverage,
            "; ".join(_gap(g) for g in st.gaps),
        )
    out.print(t)


def _gap(g: GapSummary) -> str:
    settled = ", ".join(
        part
        for part in (
            f"{g.recovered:,} recovered" if g.recovered else "",
            f"{g.terminal:,} terminal" if g.terminal else "",
        )
        if part
    )
    return f"{g.open:,} open {escape(g.reason)} ({g.recovery_class}{', ' + settled if settled else ''})"
