"""Before a run starts: does the worker it would go to know its connector?

The CLI reads one registry and the worker another (another `--connectors`, another directory,
another machine). The only truthful answer comes from a worker itself, reading its registry the
way prepare_run will: ResolveConnectorWorkflow asks one on the run's task queue. A worker that
does not know the connector makes this a refusal that names the registry it reads; no worker
polling, or none answering in time, is no refusal (the run would end `failed`,
`configuration_error`, on such a worker anyway, naming both registries).
"""

from __future__ import annotations

import asyncio
import secrets

from temporalio.client import Client, WorkflowFailureError

from pdpp_orch.control import UsageError
from pdpp_orch.control.waiting import workers_polling
from pdpp_orch.models import Resolution, ResolveInput
from pdpp_orch.registry import Registry
from workflows import ids
from workflows.resolve import RESOLVE_TIMEOUT, ResolveConnectorWorkflow


class NoAnswer(Exception):
    """No worker of the task queue answered in time (busy, or one without ResolveConnectorWorkflow
    during an upgrade): the run is started all the same."""


async def ask_worker(client: Client, task_queue: str, inp: ResolveInput) -> Resolution | None:
    """A worker's answer; None when no worker polls `task_queue` (the run will wait for one, and
    `run --wait` says so); NoAnswer when none answers in time."""
    if await workers_polling(client, task_queue) is False:
        return None
    handle = await client.start_workflow(
        ResolveConnectorWorkflow.run,
        inp,
        id=ids.resolve_workflow_id(inp.connector, secrets.token_hex(3)),
        task_queue=task_queue,
        execution_timeout=RESOLVE_TIMEOUT,
        static_summary=f"can a worker run {inp.connector}?",
    )
    try:
        return await asyncio.wait_for(handle.result(), RESOLVE_TIMEOUT.total_seconds())
    except (TimeoutError, WorkflowFailureError) as e:
        raise NoAnswer(
            f"no worker on task queue {task_queue!r} said within {RESOLVE_TIMEOUT.seconds} s whether it "
            f"can run {inp.connector!r}; starting anyway"
        ) from e


async def refuse_unknown(
    client: Client, task_queue: str, registry: Registry, connector: str, streams: list[str] | None = None
) -> str | None:
    """A UsageError when the worker on `task_queue` cannot run `connector` (with `streams`),
    naming the registry it reads and the one this command read; a note to print when no worker
    answered."""
    inp = ResolveInput(connector=connector, streams=streams or [])
    try:
        answer = await ask_worker(client, task_queue, inp)
    except NoAnswer as e:
        return str(e)
    if answer is None or answer.problem is None:
        return None
    mine = registry.describe()
    reads = f"it reads {answer.registry}" if answer.registry else "its registry is unreadable"
    if answer.registry != mine:
        reads += f", this command read {mine}"
    fix = (
        f"give the worker this command's registry (`pdpp-orch worker --connectors {mine}` or "
        f"PDPP_CONNECTORS={mine}; for the dev stack's own worker, `pdpp-orch dev --connectors {mine}`) "
        "or add the connector to the one it reads"
        if len(registry.sources) > 1 and answer.registry != mine
        else "fix the registry the worker reads"
    )
    raise UsageError(
        f"not started: the worker on task queue {task_queue!r} ({answer.worker}) cannot run "
        f"connector {connector!r}: {reads}: {answer.problem}. To run it, {fix}."
    )
