"""`pdpp-orch erase`: the owner's right to erase (DESIGN §14). Refused while a run of the
connector is going (it would write again what is being erased); the erasing itself is one
transaction of the store's (store/erasure.py); what remains is told, Temporal's histories too."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from pdpp_orch.control import UsageError
from pdpp_orch.registry import CONNECTOR_NAME
from pdpp_orch.store import Busy, Remains, Scope, Store


class Erasure(BaseModel):
    """What an erase removed (rows per table) and what remains of the connector."""

    scope: Scope
    erased: dict[str, int]
    remains: Remains
    histories: int  # the connector's workflows in Temporal (counts, our ids, no personal data)


def _busy(connector: str, run_id: str) -> UsageError:
    return UsageError(
        f"run {run_id} of {connector!r} is going: wait for its end or cancel it "
        f"(`pdpp-orch cancel {run_id} --wait`), then erase (nothing was erased)"
    )


async def _running(client: Client, query: str) -> list[str]:
    return [w.id async for w in client.list_workflows(f"{query} AND ExecutionStatus = 'Running'")]


async def _gone(client: Client, run_id: str) -> bool:
    """Whether the workflow of a run that holds its connector's lock is no longer running."""
    try:
        return (await client.get_workflow_handle(run_id).describe()).status != WorkflowExecutionStatus.RUNNING
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise
        return True


async def erase(store: Store, client: Client, scope: Scope) -> Erasure:
    """Erase `scope`, unless a run of its connector is going (forward or recovery)."""
    if not CONNECTOR_NAME.fullmatch(scope.connector):
        raise UsageError(f"{scope.connector[:64]!r} is not a connector name")
    runs = f"WorkflowType = 'ConnectorRunWorkflow' AND PdppConnector = '{scope.connector}'"
    running = await _running(client, runs)
    if running:
        raise _busy(scope.connector, running[0])
    holder = await store.erasure.lock_holder(scope.connector)
    stale = frozenset({holder}) if holder is not None and await _gone(client, holder) else frozenset()
    try:
        erased = await store.erasure.erase(scope, stale)
    except Busy as e:
        raise _busy(scope.connector, e.run_id) from None
    histories = (await client.count_workflows(runs)).count
    return Erasure(
        scope=scope, erased=erased, remains=await store.erasure.remains(scope.connector), histories=histories
    )
