"""The simulated upstreams as a process: listen, announce the URL, serve until SIGTERM/SIGINT.

`python -m pdpp_orch.upstream` and `pdpp-orch upstream` call `serve`; `app` has the routes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from pdpp_orch.upstream.app import build_app
from pdpp_orch.upstream.faults import FaultPlan, load_plan
from pdpp_orch.upstream.world import World, load_world


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=512)


def _write_ready(path: str, payload: dict[str, Any]) -> None:
    # Write-then-rename so a poller never reads half a file.
    tmp = f"{path}.tmp"
    Path(tmp).write_text(json.dumps(payload))
    os.replace(tmp, path)


def _remove(path: str) -> None:
    Path(path).unlink(missing_ok=True)


async def run(world: World, plan: FaultPlan | None, host: str, port: int, ready_file: str | None) -> None:
    """Serve until SIGTERM/SIGINT; announce the URL on stdout and in `ready_file` once listening."""
    runner = web.AppRunner(build_app(world, plan), access_log=None, handle_signals=False)
    await runner.setup()
    sock = _bind(host, port)
    site = web.SockSite(runner, sock)
    await site.start()
    bound = sock.getsockname()[1]
    url = f"http://{f'[{host}]' if ':' in host else host}:{bound}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"upstream listening on {url}", flush=True)
    if ready_file:
        _write_ready(ready_file, {"url": url, "pid": os.getpid(), "world": world.name})
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        if ready_file:
            _remove(ready_file)


def serve(host: str, port: int, world: str, plan: str | None, ready_file: str | None) -> None:
    """Run the simulated upstreams in this process until SIGTERM/SIGINT.

    `world` is a preset name (`seed`, `small`) or a world JSON file; `plan` a fault plan file or a
    bundled preset name (`case-a`, `case-c`, `case-d`, `case-e`); port 0 picks a free port.
    """
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        loaded_world, loaded_plan = load_world(world), load_plan(plan) if plan else None
    except (OSError, ValueError) as e:  # pydantic's ValidationError is a ValueError
        raise SystemExit(f"upstream: {e}") from None
    asyncio.run(run(loaded_world, loaded_plan, host, port, ready_file))
