"""Simulated upstream services (Gmail, Slack, ChatGPT, a bank's CSV export) in one local server.

Deterministic seeded data, a JSON fault plan, per-route request counters; see
docs/simulated-upstreams.md. Tests start it with `UpstreamProcess`.
"""

from pdpp_orch.upstream.client import UpstreamError
from pdpp_orch.upstream.faults import Fault, FaultPlan, load_plan, preset_plans
from pdpp_orch.upstream.process import UpstreamProcess
from pdpp_orch.upstream.world import PRESETS, World, load_world

__all__ = [
    "PRESETS",
    "Fault",
    "FaultPlan",
    "UpstreamError",
    "UpstreamProcess",
    "World",
    "load_plan",
    "load_world",
    "preset_plans",
]
