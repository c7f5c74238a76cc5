"""Activities of GapRecoveryWorkflow: the gap ledger side of executing a retry hint."""

from __future__ import annotations

from temporalio import activity

from activities.config import RegistryLoader, entry_and_manifest
from pdpp_orch import policy, telemetry
from pdpp_orch.models import HintProgress, HintRef, LeaseInput, RecoveryEnd, RecoveryPolicy, SettleInput
from pdpp_orch.store import Store


class RecoveryActivities:
    """Leases, settlements and configuration for recoveries; given the store and the registry."""

    def __init__(self, store: Store, registry: RegistryLoader):
        self.store = store
        self.registry = registry

    @activity.defn
    async def recovery_policy(self, connector: str) -> RecoveryPolicy:
        """The connector's budget, cost per item and attempt limits, as configured now."""
        entry, manifest = await entry_and_manifest(self.registry, connector)
        budget = entry.budget.config()
        return RecoveryPolicy(
            cost_per_item=entry.budget.cost_per_item,
            budget_units=budget.units,
            budget_window_seconds=budget.window_seconds,
            max_attempts=manifest.capabilities.refresh_policy.max_recovery_attempts,
            max_no_progress=policy.MAX_NO_PROGRESS,
        )

    @activity.defn
    async def lease_gaps(self, data: LeaseInput) -> int:
        """Lease up to `limit` of the hint's open gaps (idempotent per lease id)."""
        return await self.store.leases.lease(
            data.connector, data.hint_id, data.lease_id, data.limit, data.max_attempts, data.lease_seconds
        )

    @activity.defn
    async def settle_gaps(self, data: SettleInput) -> HintProgress:
        """Settle what a recovery run was served, then report where the hint stands."""
        with telemetry.span(
            "pdpp.gaps.settle", connector=data.connector, hint_id=data.hint_id, run_clean=data.run_clean
        ) as sp:
            if data.close_all:
                await self.store.leases.close_hint(data.connector, data.hint_id, data.run_id)
            elif data.lease_id is not None:
                await self.store.leases.settle_lease(
                    data.connector,
                    data.lease_id,
                    data.run_id,
                    data.run_clean,
                    data.max_attempts,
                    data.max_no_progress,
                )
            progress = await self.store.leases.hint_progress(data.connector, data.hint_id)
            sp.set_attributes(
                {"pending": progress.pending, "recovered": progress.recovered, "terminal": progress.terminal}
            )
        return progress

    @activity.defn
    async def gap_progress(self, data: HintRef) -> HintProgress:
        """Where the hint's gaps stand (no settlement)."""
        return await self.store.leases.hint_progress(data.connector, data.hint_id)

    @activity.defn
    async def record_recovery_end(self, end: RecoveryEnd) -> None:
        """How a recovery ended (settled, gave up, cancelled and by whom), for the present."""
        await self.store.recoveries.record_end(end)
