"""ResolveConnectorWorkflow: asks a worker of its task queue whether it can run a connector —
the registry it reads, the manifest there, the streams asked for — before a run is started.

The CLI has no other way to reach a worker: it starts this short workflow on the task queue the
run would go to, and a worker that polls it answers with what prepare_run would make of the
connector. Its history holds the connector's name, stream names and registry paths only.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from pdpp_orch.models import Resolution, ResolveInput

# Reading a registry and a manifest takes milliseconds; the asker waits for no longer than this.
RESOLVE_TIMEOUT = timedelta(seconds=10)


@workflow.defn
class ResolveConnectorWorkflow:
    """One question to one worker: can you run this connector?"""

    @workflow.run
    async def run(self, inp: ResolveInput) -> Resolution:
        answer: Resolution = await workflow.execute_activity(
            "resolve_connector",
            inp,
            result_type=Resolution,
            start_to_close_timeout=RESOLVE_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=2),
            summary=f"can this worker run {inp.connector}?",
        )
        return answer
