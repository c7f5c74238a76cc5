"""Every workflow id, run id and request id of the project, built in one place.

Pure string functions (no clock, no randomness of their own), so workflows, activities and the
client side all import them and agree. A run id is also its workflow id.
"""

from __future__ import annotations

from datetime import datetime

from temporalio.common import WorkerDeploymentVersion


def run_id(connector: str, now: datetime, token: str) -> str:
    """A manual run's id: the connector, the UTC time it was started and a random token."""
    return f"{connector}-{now:%Y%m%dT%H%M%S}-{token}"


def recovery_workflow_id(hint_id: str) -> str:
    """The GapRecoveryWorkflow executing one retry hint (one at a time per hint)."""
    return f"recovery-{hint_id}"


def recovery_run_id(connector: str, hint_id: str, execution: str, round_no: int) -> str:
    """The id of round `round_no` of a recovery: the whole hint id and the recovery's first
    execution, so a hint recovered again (`recover --now` after a cancel, a requeued gap) never
    reuses the run id of an earlier recovery of it."""
    return f"{connector}-recovery-{hint_id.removeprefix('hint_')}-{execution[:8]}-{round_no}"


def recovery_run_hint(connector: str, run_id: str) -> str | None:
    """The hint a recovery run (a `recovery_run_id`) executed, or None for any other run id."""
    parts = run_id.removeprefix(f"{connector}-recovery-").split("-")
    if not run_id.startswith(f"{connector}-recovery-") or len(parts) != 3:
        return None
    return f"hint_{parts[0]}"


def legacy_recovery_run_id(connector: str, hint_id: str, round_no: int) -> str:
    """The recovery run id of histories recorded before `recovery_run_id` (replay only): it kept
    8 characters of the hint, so every requeued hint (`hint_requeue_…`) got the same one."""
    return f"{connector}-recovery-{hint_id[5:13]}-{round_no}"


def lease_id(hint_id: str, round_no: int) -> str:
    """The gaps served to round `round_no` of a hint's recovery."""
    return f"{hint_id}-r{round_no}"


def budget_workflow_id(connector: str) -> str:
    """The id of `connector`'s budget workflow: one per connector, across continue-as-new."""
    return f"budget-{connector}"


def schedule_id(connector: str) -> str:
    """The Temporal Schedule of `connector`'s recurring sync."""
    return f"sync-{connector}"


def charge_request_id(run_id: str) -> str:
    """The budget charge of a run (idempotent: one per run): a forward run's own, or what a
    walking recovery run re-collected beyond its grant, charged by its recovery."""
    return f"{run_id}/charge"


def grant_request_id(recovery_workflow_id: str, execution: str, round_no: int, budget_waits: int) -> str:
    """A recovery's budget request: stable per round and wait, so a retried activity gets the
    same grant back, not a second one; and of the recovery's first execution, so a hint
    recovered again (`recover now` after a cancel) asks afresh instead of being handed the
    answers, grants or refusals, of the recovery before it."""
    return f"{recovery_workflow_id}/{execution[:8]}/{round_no}/{budget_waits}"


def resolve_workflow_id(connector: str, token: str) -> str:
    """A question to a worker, before a run of `connector` starts: can it run it?"""
    return f"resolve-{connector}-{token}"


def build_id(version: WorkerDeploymentVersion | None) -> str | None:
    """The Worker Versioning build a workflow task ran on; None for an unversioned worker (it
    reports no deployment name, only the SDK's hash of the code)."""
    return version.build_id if version is not None and version.deployment_name else None
