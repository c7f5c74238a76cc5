"""The synthetic data of each simulated service, derived from a `World` (no HTTP here).

Each service's data is built lazily: a record is computed from (seed, index) when asked for.
"""

from __future__ import annotations

from pdpp_orch.upstream.data.bank import BankData
from pdpp_orch.upstream.data.chatgpt import ChatGPTData
from pdpp_orch.upstream.data.gmail import GmailData
from pdpp_orch.upstream.data.slack import SlackData
from pdpp_orch.upstream.world import World

__all__ = ["BankData", "ChatGPTData", "GmailData", "SlackData", "WorldData"]


class WorldData:
    """The generated data of one world, per service, each built on first use."""

    def __init__(self, world: World) -> None:
        self.gmail = GmailData(world)
        self.slack = SlackData(world)
        self.chatgpt = ChatGPTData(world)
        self.bank = BankData(world)
