"""Building and running a worker: the composition root of store, registry and Temporal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.worker import Interceptor, Worker, WorkerDeploymentConfig

from activities.budget import BudgetActivities
from activities.checkpoints import CheckpointActivities
from activities.config import ResolveActivities
from activities.failures import Honest
from activities.orphans import reap_orphans
from activities.recovery import RecoveryActivities
from activities.runs import RunActivities
from activities.sandbox import Sandbox
from activities.sandbox.probe import sandbox_problem
from pdpp_orch.registry import Registry
from pdpp_orch.settings import Settings
from pdpp_orch.store import Store
from workflows.versioning import UNVERSIONED, VERSIONED

log = logging.getLogger(__name__)


def build_worker(
    client: Client,
    store: Store,
    task_queue: str,
    registry: Callable[[], Registry],
    interceptors: Sequence[Interceptor] = (),
    sandbox: Sandbox | None = None,
    deployment: WorkerDeploymentVersion | None = None,
) -> Worker:
    """A worker for every workflow and activity of the project on `task_queue` (`interceptors`:
    the fault tests' way in between the steps of a run; `sandbox`: what its connectors' sandboxes
    hide and where they keep their data, by default from the environment's settings). With
    `deployment` it is that version of a Worker Deployment and registers the workflows with their
    versioning behaviours (workflows/versioning.py); without, it is unversioned."""
    acts = RunActivities(store, registry, sandbox or Sandbox.for_worker(Settings().data_dir))
    checkpoints = CheckpointActivities(store, registry)
    recovery = RecoveryActivities(store, registry)
    budget = BudgetActivities(client, task_queue)
    resolve = ResolveActivities(registry)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=UNVERSIONED if deployment is None else VERSIONED,
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
            resolve.resolve_connector,
        ],
        # Activities are async and stream subprocess output: a few at a time per worker keeps
        # memory bounded; scale out with more workers on the same task queue.
        max_concurrent_activities=20,
        graceful_shutdown_timeout=timedelta(seconds=10),
        # A cancel reaches an activity with the answer to its next heartbeat; the SDK otherwise
        # throttles heartbeats to 80% of the heartbeat timeout (24 s by default).
        max_heartbeat_throttle_interval=timedelta(seconds=2),
        # Honest first, so outermost: a step that fails for good says so (activities/failures.py).
        interceptors=[Honest(), *interceptors],
        deployment_config=None
        if deployment is None
        else WorkerDeploymentConfig(version=deployment, use_worker_versioning=True),
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
    data_dir: Path | None = None,
    deployment: WorkerDeploymentVersion | None = None,
) -> None:
    """Run a worker (of `deployment`'s version, if given) until `stop` is set (`data_dir`: the
    worker's, hidden from its connectors, which keep theirs in it; by default the settings')."""
    await asyncio.to_thread(reap_orphans)
    if problem := await sandbox_problem():
        log.warning(
            "connectors cannot be sandboxed on this worker (%s): their runs will fail, reason"
            " sandbox_unavailable, unless opted out (sandbox = false, or PDPP_SANDBOX=off)",
            problem,
        )
    store = await Store.connect(database_url)
    sandbox = Sandbox.for_worker(data_dir or Settings().data_dir, database_url)
    try:
        worker = build_worker(
            client,
            store,
            task_queue,
            registry_loader(registry_path),
            sandbox=sandbox,
            deployment=deployment,
        )
        async with worker:
            version = deployment.to_canonical_string() if deployment else "unversioned"
            log.info("worker polling task queue %s as %s", task_queue, version)
            await stop.wait()
    finally:
        await store.close()
