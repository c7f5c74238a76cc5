"""Whether this worker can make a sandbox at all: said when it starts, rather than only at the
first run that refuses."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from activities.process import ConnectorProcess, SandboxFailed
from activities.sandbox.policy import Sandbox
from pdpp_orch.manifest import ConfigError
from pdpp_orch.registry import ConnectorEntry
from pdpp_orch.sandbox_config import sandbox_switched_off


async def sandbox_problem() -> str | None:
    """Why a connector cannot be sandboxed here (None: it can, or PDPP_SANDBOX=off): `true`,
    started in a sandbox of a scratch data directory."""
    if sandbox_switched_off():
        return None
    with tempfile.TemporaryDirectory(prefix="pdpp-sandbox-probe-") as tmp:
        work = Path(tmp)
        entry = ConnectorEntry(name="sandbox-probe", command=["true"], manifest=work / "none.json")
        env = {"PATH": os.environ.get("PATH") or os.defpath}
        try:
            launch = Sandbox(data_dir=work / "data").prepare(entry, [], work, env, made=True)
            proc = ConnectorProcess(entry.command, env, work, launch)
            await proc.start()
        except (ConfigError, OSError, SandboxFailed) as e:
            return str(e)
        proc.close_stdin()
        await proc.wait()
        proc.close_stdout()
        await proc.finish_stderr()
    return None
