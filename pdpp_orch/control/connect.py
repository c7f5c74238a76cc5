"""Connecting to Temporal the one way the project does it — workers, every command and the
schedules they make: Temporal's own environment configuration (pdpp_orch.settings.
temporal_profile: TLS, a client certificate, an API key, gRPC metadata), pydantic payloads,
encrypted when a key is configured (pdpp_orch.codec), traced when telemetry is on
(pdpp_orch.telemetry)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from temporalio.client import Client

from pdpp_orch import telemetry
from pdpp_orch.codec import Keyring, data_converter
from pdpp_orch.settings import TemporalConfigError, temporal_profile


def connect_options(address: str, namespace: str) -> dict[str, Any]:
    """`Client.connect` arguments: the profile's TLS, API key and metadata, for `address` (the
    profile's own, or the dev stack's when it names none) and `namespace`."""
    profile = temporal_profile()
    try:
        options: dict[str, Any] = dict(profile.to_client_connect_config())
    except OSError as e:  # a certificate or key file it names
        raise TemporalConfigError(f"Temporal's environment configuration: {e}") from e
    options.update(target_host=address, namespace=namespace)
    return options


async def connect(address: str, namespace: str = "default", *, wait_s: float = 0.0) -> Client:
    """A client (and, through it, a worker) configured from the environment. With `wait_s`,
    a server that is still starting (port closed, "Frontend is not healthy yet") is retried
    for that long."""
    tel = telemetry.setup()
    options = connect_options(address, namespace)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await Client.connect(
                **options,
                data_converter=data_converter(Keyring.from_env()),
                interceptors=tel.interceptors,
                runtime=tel.runtime,
            )
        except RuntimeError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)
