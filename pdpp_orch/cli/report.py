"""`report [NAME]`: am I missing anything?"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pdpp_orch import report as rp
from pdpp_orch.cli.common import ConnectorsOpt, DataDirOpt, JsonOpt, err, out, run_async, settings
from pdpp_orch.control import UsageError
from pdpp_orch.control.stack import command_store, endpoints
from pdpp_orch.models.progress import owner_action_text
from pdpp_orch.registry import Registry
from pdpp_orch.settings import Settings


def report(
    name: Annotated[str | None, typer.Argument(help="Only this connector.")] = None,
    as_json: JsonOpt = False,
    html_file: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML report to this file.")
    ] = None,
    connectors: ConnectorsOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Am I missing anything? Per connector and stream: records held, the last committed
    checkpoint and its age, coverage, open gaps by reason and recovery class, the next retry and
    its cost, and what waits on the owner."""
    run_async(_report(settings(data_dir, connectors), name, as_json, html_file))


async def _report(s: Settings, name: str | None, as_json: bool, html_file: Path | None) -> int:
    _, database = endpoints(s)
    async with command_store(database) as store:
        rows = await store.reports.rows(name)
    registry = Registry.load(s.connectors)
    costs = {n: e.budget.cost_per_item for n, e in registry.entries.items()}
    now = rp.generated_at()
    reports = rp.build(rows, costs, now)
    if name is not None and not reports:
        raise UsageError(f"nothing recorded for connector {name!r}")
    if html_file is not None:
        await asyncio.to_thread(html_file.write_text, rp.to_html(reports, now), encoding="utf-8")
    if as_json:
        print(rp.to_json(reports))
        return 0
    for r in reports:
        _print_connector(r)
    if html_file is not None:
        err.print(f"wrote {html_file}")
    return 0


def _print_connector(r: rp.ConnectorReport) -> None:
    verdict = "[green]nothing missing[/]" if not r.missing_anything else "[yellow]something is missing[/]"
    retry = (
        f"next retry {r.next_retry:%Y-%m-%d %H:%M} UTC ({r.next_retry_cost:,} units)"
        if r.next_retry
        else "no retry planned"
    )
    owner = f" · [red]{r.waiting_on_owner:,} waiting on you[/]" if r.waiting_on_owner else ""
    out.print(f"[bold]{r.connector}[/]: {verdict} · {retry}{owner}")
    for a in r.asks:
        out.print(
            f"  [red]run {a.run_id} waits for your {a.kind}[/] until {a.expires_at:%Y-%m-%d %H:%M} UTC:"
            f" pdpp-orch respond {a.run_id} --data -",
            highlight=False,
        )
    for n in r.notices:
        out.print(
            f"  [red]run {n.run_id} asks you to {owner_action_text(n.owner_action)}[/]"
            " (pdpp-orch runs shows its message)",
            highlight=False,
        )
    t = Table("stream", "records held", "checkpoint", "age (h)", "coverage", "open gaps")
    for st in r.streams:
        t.add_row(
            st.stream,
            f"{st.records_held:,}",
            f"{st.checkpoint_committed_at:%Y-%m-%d %H:%M}" if st.checkpoint_committed_at else "none",
            "" if st.checkpoint_age_hours is None else str(st.checkpoint_age_hours),
            st.coverage,
            "; ".join(f"{g.open:,} {g.reason} ({g.recovery_class})" for g in st.gaps),
        )
    out.print(t)
