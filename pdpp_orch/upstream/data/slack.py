"""Slack's synthetic workspace: users, channels and per-channel message sequences.

Message (channel, i) is computed when a page is served, never stored, so the seed world (574k
messages) costs nothing until asked for; only the per-channel tables (ids, message counts,
timing) are built, on first use.
"""

from __future__ import annotations

import bisect
import random
from functools import cached_property

from pdpp_orch.upstream.synth import (
    DAY_S,
    FIRST,
    JSON,
    LAST,
    T_SLACK_CHAN,
    T_SLACK_DIST,
    T_SLACK_MSG,
    T_SLACK_USER,
    US,
    WORDS,
    alnum,
    keyed,
    mix,
    phrase,
)
from pdpp_orch.upstream.world import World

_TZS = ("America/Chicago", "America/New_York", "Europe/Berlin", "Asia/Tokyo", "America/Los_Angeles")
_EMOJI = (
    "thumbsup eyes tada white_check_mark heart joy fire rocket pray 100 raised_hands wave ok_hand".split()
)


class SlackData:
    """Users, channels and per-channel message sequences; message (channel, i) is computed on demand."""

    def __init__(self, world: World) -> None:
        self.cfg = world.slack
        self._seed = world.seed
        self._anchor_s = int(world.anchor.timestamp())
        self.special_index = self.cfg.channels // 2

    @cached_property
    def user_ids(self) -> list[str]:
        """`U0` + 9 base-36 characters, unique."""
        return self._unique_ids("U0", T_SLACK_USER, self.cfg.users, set())

    @cached_property
    def channel_ids(self) -> list[str]:
        """`C0` + 9 base-36 characters, unique; the special channel sits in the middle."""
        ids = self._unique_ids("C0", T_SLACK_CHAN, self.cfg.channels, {self.cfg.special_channel_id})
        ids[self.special_index] = self.cfg.special_channel_id
        return ids

    @cached_property
    def channel_index(self) -> dict[str, int]:
        """Channel id → position in `channel_ids`."""
        return {cid: k for k, cid in enumerate(self.channel_ids)}

    def _unique_ids(self, prefix: str, tag: int, n: int, taken: set[str]) -> list[str]:
        out: list[str] = []
        salt = 0
        for k in range(n):
            while (cid := prefix + alnum(keyed(self._seed, tag, k, salt), 9)) in taken:
                salt += 1  # practically never; keeps ids unique whatever the seed
            taken.add(cid)
            out.append(cid)
        return out

    @cached_property
    def message_counts(self) -> list[int]:
        """Messages per channel: skewed (log-normal weights), every channel at least one."""
        n = self.cfg.channels
        others = [k for k in range(n) if k != self.special_index]
        rng = random.Random(keyed(self._seed, T_SLACK_DIST))
        weights = [rng.lognormvariate(0.0, 2.0) for _ in others]
        spare = self.cfg.messages - len(others)
        total_w = sum(weights) or 1.0
        shares = [w * spare / total_w for w in weights]
        counts = [1 + int(s) for s in shares]
        # Largest remainders take the messages that flooring lost, so the sum is exact.
        left = self.cfg.messages - sum(counts)
        by_remainder = sorted(range(len(others)), key=lambda k: shares[k] - int(shares[k]), reverse=True)
        for k in by_remainder[:left]:
            counts[k] += 1
        out = [0] * n
        for k, c in zip(others, counts, strict=True):
            out[k] = c
        out[self.special_index] = self.cfg.special_channel_messages
        return out

    @cached_property
    def _timing(self) -> list[tuple[int, int, int, int]]:
        """Per channel: (created epoch s, first-ts µs, spacing µs, hash key)."""
        out = []
        end_us = (self._anchor_s - 60) * US
        for k, count in enumerate(self.message_counts):
            key = keyed(self._seed, T_SLACK_MSG, k)
            created = self._anchor_s - 30 * DAY_S - key % (8 * 365 * DAY_S)
            start_us = (created + 1) * US
            out.append((created, start_us, max(2, (end_us - start_us) // max(1, count)), key))
        return out

    def ts_us(self, ch: int, i: int) -> int:
        """Timestamp of message `i` of channel `ch` in µs; strictly increasing in `i`."""
        _, start, spacing, key = self._timing[ch]
        return start + i * spacing + mix(key + i) % (spacing // 2)

    def first_after(self, ch: int, oldest_us: int) -> int:
        """Index of the first message of `ch` with ts > `oldest_us`."""
        return bisect.bisect_right(range(self.message_counts[ch]), oldest_us, key=lambda i: self.ts_us(ch, i))

    def messages(self, ch: int, hi: int, lo: int) -> list[JSON]:
        """Messages hi, hi-1, …, lo of channel `ch` (newest first, as conversations.history)."""
        _, start, spacing, key = self._timing[ch]
        half = spacing // 2
        users = self.user_ids
        n_users = len(users)
        out: list[JSON] = []
        append = out.append
        for i in range(hi, lo - 1, -1):
            h = mix(key + i)
            us = start + i * spacing + h % half
            ts = f"{us // US}.{us % US:06d}"
            msg: JSON = {
                "type": "message",
                "ts": ts,
                "user": users[(h >> 20) % n_users],
                "text": phrase(mix(h)),
                "reactions": [],
            }
            if (h >> 52) & 7 == 0:
                who = list(dict.fromkeys(users[(h >> (8 * k)) % n_users] for k in range(1 + (h >> 40) % 3)))
                msg["reactions"] = [
                    {"name": _EMOJI[(h >> 44) % len(_EMOJI)], "count": len(who), "users": who}
                ]
            if (h >> 56) & 15 == 0:
                msg["thread_ts"] = ts
                msg["reply_count"] = 1 + (h >> 60)
            append(msg)
        return out

    def user(self, k: int) -> JSON:
        """User `k` in the users.list member format."""
        uid = self.user_ids[k]
        h = keyed(self._seed, T_SLACK_USER, k, 1)
        first, last = FIRST[h & 15], LAST[(h >> 4) & 15]
        bot = (h >> 8) % 30 == 0
        name = f"{first.lower()}.{last.lower()}{k}" if not bot else f"{WORDS[(h >> 16) & 63]}-bot"
        return {
            "id": uid,
            "name": name,
            "real_name": f"{first} {last}" if not bot else name,
            "tz": _TZS[(h >> 24) % len(_TZS)],
            "is_bot": bot,
            "deleted": (h >> 32) % 20 == 0,
            "profile": {
                "display_name": first.lower() if not bot else name,
                "title": f"{WORDS[(h >> 40) & 63].title()} lead" if (h >> 46) & 1 else "",
                "image_48": f"https://avatars.example.test/{uid}_48.png",
            },
        }

    def channel(self, k: int) -> JSON:
        """Channel `k` in the conversations.list format."""
        cid = self.channel_ids[k]
        created, _, _, key = self._timing[k]
        h = mix(key ^ 0xC4A7)
        special = k == self.special_index
        return {
            "id": cid,
            "name": "ops-incidents" if special else f"{WORDS[h & 63]}-{WORDS[(h >> 6) & 63]}-{k}",
            "is_private": (h >> 12) % 7 == 0,
            "is_archived": (h >> 16) % 10 == 0,
            "created": created,
            "creator": self.user_ids[(h >> 20) % len(self.user_ids)],
            "topic": {"value": phrase(h >> 8)},
            "purpose": {"value": phrase(mix(h))},
            "num_members": 2 + (h >> 28) % 300,
        }
