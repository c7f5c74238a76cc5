"""Building and running a worker: the composition root of store, registry and Temporal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Interceptor, Worker

from activities.budget import BudgetActivities
from activities.checkpoints import CheckpointActivities
from activities.orphans import reap_orphans
from activities.recovery import RecoveryActivities
from activities.runs import RunActivities
from pdpp_orch.registry import Registry
from pdpp_orch.store import Store
from workflows.budget import ConnectorBudgetWorkflow
from workflows.connector_run import ConnectorRunWorkflow
from workflows.recovery import GapRecoveryWorkflow

log = logging.getLogger(__name__)


def build_worker(
    client: Client,
    store: Store,
    task_queue: str,
    registry: Callable[[], Registry],
    interceptors: Sequence[Interceptor] = (),
) -> Worker:
    """A worker for every workflow and activity of the project on `task_queue` (`interceptors`:
    the fault tests' way in between the steps of a run)."""
    acts = RunActivities(store, registry)
    checkpoints = CheckpointActivities(store, registry)
    recovery = RecoveryActivities(store, registry)
    budget = BudgetActivities(client, task_queue)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[ConnectorRunWorkflow, GapRecoveryWorkflow, ConnectorBudgetWorkflow],
        activities=[
            acts.claim_connector,
            acts.prepare_run,
            acts.collect,
            acts.load_facts,
            checkpoints.commit_checkpoints,
            checkpoints.plan_retries,
            acts.finish_run,
            acts.note_cancel_too_late,
            recovery.recovery_policy,
            recovery.lease_gaps,
            recovery.settle_gaps,
            recovery.gap_progress,
            recovery.record_recovery_end,
            budget.request_budget,
            budget.charge_budget,
        ],
        # Activities are async and stream subprocess output: a few at a time per worker keeps
        # memory bounded; scale out with more workers on the same task queue.
        max_concurrent_activities=20,
        graceful_shutdown_timeout=timedelta(seconds=10),
        # A cancel reaches an activity with the answer to its next heartbeat; the SDK otherwise
        # throttles heartbeats to 80% of the heartbeat timeout (24 s by default).
        max_heartbeat_throttle_interval=timedelta(seconds=2),
        interceptors=interceptors,
    )


def registry_loader(path: Path | None) -> Callable[[], Registry]:
    """Re-read the registry at every run, so edits apply without a restart."""
    return lambda: Registry.load(path)


async def run_worker(
    client: Client,
    database_url: str,
    task_queue: str,
    registry_path: Path | None,
    stop: asyncio.Event,
) -> None:
    """Run a worker until `stop` is set."""
    await asyncio.to_thread(reap_orphans)
    store = await Store.connect(database_url)
    try:
        worker = build_worker(client, store, task_queue, registry_loader(registry_path))
        async with worker:
            log.info("worker polling task queue %s", task_queue)
            await stop.wait()
    finally:
        await store.close()
