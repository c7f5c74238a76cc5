"""Connecting to Temporal the one way the project does it: pydantic payloads, encrypted when a
key is configured (pdpp_orch.codec), traced when telemetry is on (pdpp_orch.telemetry)."""

from __future__ import annotations

import asyncio
import time

from temporalio.client import Client

from pdpp_orch import telemetry
from pdpp_orch.codec import Keyring, data_converter


async def connect(address: str, namespace: str = "default", *, wait_s: float = 0.0) -> Client:
    """A client (and, through it, a worker) configured from the environment. With `wait_s`,
    a server that is still starting (port closed, "Frontend is not healthy yet") is retried
    for that long."""
    tel = telemetry.setup()
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await Client.connect(
                address,
                namespace=namespace,
                data_converter=data_converter(Keyring.from_env()),
                interceptors=tel.interceptors,
                runtime=tel.runtime,
            )
        except RuntimeError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)
