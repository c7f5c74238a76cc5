"""What one simulated-upstream server holds: its world's data, fault plan, counters and clock."""

from __future__ import annotations

from collections.abc import Sequence

from pdpp_orch.upstream.clock import Clock
from pdpp_orch.upstream.counters import Counters
from pdpp_orch.upstream.data import WorldData
from pdpp_orch.upstream.faults import FaultEngine, FaultPlan
from pdpp_orch.upstream.world import World


class Upstream:
    """World data, fault plan, counters and clock of one server; the routes read and change them."""

    def __init__(self, world: World, plan: FaultPlan | None = None) -> None:
        self.world = world
        self.data = WorldData(world)
        self.clock = Clock(world.anchor)
        self.counters = Counters()
        self.faults = FaultEngine(plan or FaultPlan(), self.universe)

    @property
    def plan(self) -> FaultPlan:
        """The fault plan in effect (its limits and quirks shape some answers)."""
        return self.faults.plan

    def universe(self, route: str) -> Sequence[str]:
        """Every resource id of `route` (what a fault `sample` draws from)."""
        if route == "slack.history":
            return self.data.slack.channel_ids
        if route == "chatgpt.conversation":
            return self.data.chatgpt.ids
        return []

    def set_plan(self, plan: FaultPlan) -> None:
        """Replace the plan; fire counts start from zero."""
        self.faults = FaultEngine(plan, self.universe)
