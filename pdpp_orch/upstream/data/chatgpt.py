"""ChatGPT's synthetic conversations: list order by update time, each a chain of messages."""

from __future__ import annotations

from functools import cached_property

from pdpp_orch.upstream.synth import DAY_S, JSON, T_CHATGPT, US, keyed, mix, phrase
from pdpp_orch.upstream.world import World

_MODELS = ("gpt-4o", "gpt-4", "gpt-4o-mini", "o1", "gpt-3.5-turbo")


def _uuid(h: int) -> str:
    """A version-4-shaped UUID string from a hash (formatted by hand: uuid.UUID is slow)."""
    lo = (mix(h) & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000  # RFC 4122 variant
    hi = (h & 0xFFFF_FFFF_FFFF_0FFF) | 0x4000  # version 4
    x = f"{hi:016x}{lo:016x}"
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


class ChatGPTData:
    """Conversations; the list is ordered by update_time descending like the real backend API."""

    def __init__(self, world: World) -> None:
        self.cfg = world.chatgpt
        self._key = keyed(world.seed, T_CHATGPT)
        self._anchor_s = world.anchor.timestamp()

    def _h(self, k: int) -> int:
        return mix(self._key + k)

    @cached_property
    def ids(self) -> list[str]:
        """Conversation ids in creation-index order."""
        return [_uuid(self._h(k)) for k in range(self.cfg.conversations)]

    @cached_property
    def index(self) -> dict[str, int]:
        """Conversation id → creation index."""
        return {cid: k for k, cid in enumerate(self.ids)}

    def times(self, k: int) -> tuple[float, float]:
        """(create_time, update_time) of conversation `k`, epoch seconds with µs fractions."""
        h = self._h(k)
        create = self._anchor_s - 60 - (h % (3 * 365 * DAY_S * US)) / US
        # Updated up to 60 days later, never after the anchor.
        window = min(60 * DAY_S, self._anchor_s - 1 - create)
        update = create + window * ((h >> 20) % US) / US
        return round(create, 6), round(update, 6)

    @cached_property
    def by_update(self) -> list[int]:
        """Conversation indices, most recently updated first."""
        return sorted(range(self.cfg.conversations), key=lambda k: (-self.times(k)[1], k))

    def title(self, k: int) -> str:
        """A short deterministic title."""
        return phrase(mix(self._h(k)) & ~7).capitalize()  # `& ~7` → always three words

    def summary(self, k: int) -> JSON:
        """List item for conversation `k`."""
        create, update = self.times(k)
        return {"id": self.ids[k], "title": self.title(k), "create_time": create, "update_time": update}

    def detail(self, k: int) -> JSON:
        """Full conversation `k`: a root node without a message, then a chain of message nodes."""
        h = self._h(k)
        create, update = self.times(k)
        span = self.cfg.max_messages - self.cfg.min_messages + 1
        n = self.cfg.min_messages + (h >> 7) % max(1, span)
        node_ids = [_uuid(mix(h + j)) for j in range(n + 1)]
        mapping: JSON = {}
        for j, nid in enumerate(node_ids):
            message = None
            if j:
                mh = mix(h ^ (j * 0x9E37))
                message = {
                    "id": nid,
                    "author": {"role": "user" if j % 2 else "assistant"},
                    "content": {"content_type": "text", "parts": [phrase(mh) + "."]},
                    "create_time": round(create + (update - create) * j / n, 6),
                }
            mapping[nid] = {
                "id": nid,
                "parent": node_ids[j - 1] if j else None,
                "children": [node_ids[j + 1]] if j < n else [],
                "message": message,
            }
        return {
            "id": self.ids[k],
            "title": self.title(k),
            "create_time": create,
            "update_time": update,
            "mapping": mapping,
            "current_node": node_ids[-1],
            "default_model_slug": _MODELS[(h >> 33) % len(_MODELS)],
        }
