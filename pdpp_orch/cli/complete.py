"""Shell completion (`pdpp-orch --install-completion`): connector names from the registry, run
ids from the `runs` table, scheduled connectors from Temporal. Each is bounded in time and
silent on any error: a completion that cannot be computed offers nothing, never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer

from pdpp_orch.control.stack import stack
from pdpp_orch.registry import Registry
from pdpp_orch.settings import Settings
from pdpp_orch.store import Store

T = TypeVar("T")
WITHIN_S = 2.0
LIMIT = 50


def _settings(ctx: typer.Context) -> Settings:
    """The settings, with what of --data-dir and --connectors was typed before the word."""
    s = Settings()
    for flag, attr in (("data_dir", "data_dir"), ("connectors", "connectors")):
        value = ctx.params.get(flag)
        if value:
            setattr(s, attr, Path(value))
    return s


def _quietly(work: Coroutine[Any, Any, T], default: T) -> T:
    logging.disable(logging.CRITICAL)  # a completion prints its words and nothing else
    try:
        return asyncio.run(asyncio.wait_for(work, WITHIN_S))
    except BaseException:
        return default
    finally:
        logging.disable(logging.NOTSET)


def connector_names(ctx: typer.Context, incomplete: str) -> list[str]:
    with contextlib.suppress(Exception):
        names = Registry.load(_settings(ctx).connectors).entries
        return sorted(n for n in names if n.startswith(incomplete))
    return []


async def _run_ids(s: Settings, incomplete: str) -> list[tuple[str, str]]:
    store = await Store.connect(stack(s).database_url, min_size=1, max_size=1, apply_schema=False)
    try:
        return await store.runs.ids(incomplete, LIMIT)
    finally:
        await store.close()


def run_ids(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """The newest run ids that start with what was typed, each with its connector and status."""
    return _quietly(_run_ids(_settings(ctx), incomplete), [])


class Made:
    """Whether a completion made a Temporal client (which can crash the interpreter at exit)."""

    temporal_client = False


async def _scheduled(s: Settings) -> list[str]:
    from pdpp_orch.control.connect import connect  # Temporal's SDK: for this completion alone

    address = stack(s).temporal_address
    Made.temporal_client = True
    client = await connect(address, s.temporal_namespace)
    ids = [e.id async for e in await client.list_schedules()]
    return [i.removeprefix("sync-") for i in ids if i.startswith("sync-")]


def scheduled_connectors(ctx: typer.Context, incomplete: str) -> list[str]:
    """Connectors with a schedule (`sync-NAME`), for the schedule commands but `create`."""
    names: list[str] = _quietly(_scheduled(_settings(ctx)), [])
    return sorted(n for n in names if n.startswith(incomplete))
