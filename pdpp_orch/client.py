"""Connecting to Temporal the one way the project does it: pydantic payloads, encrypted when a
key is configured (pdpp_orch.codec), traced when telemetry is on (pdpp_orch.telemetry)."""

from __future__ import annotations

from temporalio.client import Client

from pdpp_orch import telemetry
from pdpp_orch.codec import Keyring, data_converter


async def connect(address: str, namespace: str = "default") -> Client:
    """A client (and, through it, a worker) configured from the environment."""
    tel = telemetry.setup()
    return await Client.connect(
        address,
        namespace=namespace,
        data_converter=data_converter(Keyring.from_env()),
        interceptors=tel.interceptors,
        runtime=tel.runtime,
    )
