"""The synthetic world behind the simulated upstreams: sizes (pydantic) and deterministic data.

Everything is a pure function of (world seed, service, index): a Slack message is computed from
its channel and position when a page is served, never stored, so the seed world (574k Slack
messages) costs nothing until asked for. Only small per-entity tables (channel ids, message
counts per channel, conversation ids, Gmail thread membership) are built, lazily, on first use.
"""

from __future__ import annotations

import base64
import bisect
import json
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

ANCHOR = datetime(2026, 4, 20, tzinfo=UTC)
MAX_MODSEQ = 2**64 - 1
SPECIAL_CHANNEL = "C017NG64T24"

_M64 = 2**64 - 1
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_US = 1_000_000
_DAY_S = 86_400

JSON = dict[str, Any]


def mix(x: int) -> int:
    """SplitMix64 finaliser: a fast, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _key(seed: int, *parts: int) -> int:
    x = seed & _M64
    for p in parts:
        x = mix(x ^ (p & _M64))
    return x


def _alnum(h: int, n: int) -> str:
    out = []
    for _ in range(n):
        h, r = divmod(h, 36)
        out.append(_ALNUM[r])
    return "".join(out)


# Distinct stream tags so that e.g. Slack user 5 and Gmail message 5 never share a hash.
_T_GMAIL, _T_SLACK_USER, _T_SLACK_CHAN, _T_SLACK_MSG, _T_SLACK_DIST, _T_CHATGPT, _T_BANK = range(1, 8)

WORDS = (
    "alpha bravo budget call cedar client data deadline design draft dinner ember falcon garden "
    "harbor invoice juniper kettle launch ledger maple meeting metric migration north notes "
    "ocean orbit paper pilot plan quarter quartz rain release report review river roadmap "
    "schedule signal sprint spruce summer sync ticket timber travel update urgent velvet vendor "
    "weekly willow window winter yarrow zephyr agenda backlog coffee deploy feedback lunch"
).split()
assert len(WORDS) == 64, len(WORDS)  # text generation takes 6 bits per word
FIRST = "Ada Ben Cleo Dev Eli Fay Gus Hana Ivo Jun Kai Lena Milo Nia Omar Pia".split()
LAST = (
    "Abbott Brandt Castro Dunn Eriksen Frost Gupta Hale Ito Jansen Kovac Lund Moreau Novak Ortiz Park".split()
)
_TZS = ("America/Chicago", "America/New_York", "Europe/Berlin", "Asia/Tokyo", "America/Los_Angeles")
_EMOJI = (
    "thumbsup eyes tada white_check_mark heart joy fire rocket pray 100 raised_hands wave ok_hand".split()
)
_SHIFTS = tuple(range(4, 64, 6))


def _text(h: int) -> str:
    """3–10 words drawn from the bits of `h`."""
    n = 3 + (h & 7)
    return " ".join([WORDS[(h >> s) & 63] for s in _SHIFTS[:n]])


# --- configuration -------------------------------------------------------------------------------


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GmailWorld(_Config):
    """Mailbox sizes: labels + threads + messages is the number of records a full sync emits."""

    email: str = "owner@example.test"
    labels: int = Field(24, ge=1)
    threads: int = Field(12_372, ge=1)
    messages: int = Field(38_000, ge=1)

    @model_validator(mode="after")
    def _every_thread_has_a_message(self) -> GmailWorld:
        if self.messages < self.threads:
            raise ValueError("gmail.messages must be >= gmail.threads (every thread has a message)")
        return self


class SlackWorld(_Config):
    """Workspace sizes; `messages` excludes the special channel's own `special_channel_messages`."""

    users: int = Field(1_460, ge=1)
    channels: int = Field(3_240, ge=1)
    messages: int = Field(574_274, ge=0)
    special_channel_id: str = SPECIAL_CHANNEL
    special_channel_messages: int = Field(137, ge=1)

    @model_validator(mode="after")
    def _every_channel_has_a_message(self) -> SlackWorld:
        if self.messages < self.channels - 1 or (self.channels == 1 and self.messages):
            raise ValueError("slack.messages must give every non-special channel at least one message")
        return self


class ChatGPTWorld(_Config):
    """Conversation count and the number of message nodes per conversation."""

    conversations: int = Field(14_784, ge=0)
    min_messages: int = Field(2, ge=1)
    max_messages: int = Field(8, ge=1)


class BankWorld(_Config):
    """One checking account, `years` years plus `extra_days` days of history before the anchor."""

    account_id: str = "000012345678"
    years: int = Field(5, ge=0)
    extra_days: int = Field(30, ge=0)
    min_per_day: int = Field(1, ge=0)
    max_per_day: int = Field(4, ge=0)
    opening_balance_cents: int = 1_250_000


class World(_Config):
    """A whole synthetic world; every value served is derived from `seed` and these sizes."""

    name: str = "seed"
    seed: int = 20_260_420
    anchor: datetime = ANCHOR
    gmail: GmailWorld = GmailWorld()
    slack: SlackWorld = SlackWorld()
    chatgpt: ChatGPTWorld = ChatGPTWorld()
    bank: BankWorld = BankWorld()


PRESETS: dict[str, World] = {
    # The sizes of the real incidents (Gmail 50,396 records, Slack 574,274 messages in 3,240
    # channels, ChatGPT 4,188 + 10,596 conversations).
    "seed": World(),
    "small": World(
        name="small",
        gmail=GmailWorld(labels=5, threads=60, messages=200),
        slack=SlackWorld(users=20, channels=30, messages=3_000),
        chatgpt=ChatGPTWorld(conversations=300),
    ),
}


def _merge(base: JSON, override: JSON) -> JSON:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_world(spec: str | Path) -> World:
    """A preset name (`seed`, `small`) or a JSON file overriding any subset of a preset's fields.

    The file may name its base with `"preset"` (default `seed`); its `name` defaults to the file's
    stem.
    """
    if isinstance(spec, str) and spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"unknown world {str(spec)!r}: not a preset ({', '.join(PRESETS)}) nor a file")
    override = json.loads(path.read_text())
    if not isinstance(override, dict) or override.get("preset", "seed") not in PRESETS:
        raise ValueError(f"{path}: expected a JSON object; its optional preset one of {', '.join(PRESETS)}")
    base = PRESETS[override.pop("preset", "seed")]
    override.setdefault("name", path.stem)
    return World.model_validate(_merge(base.model_dump(mode="json"), override))


# --- Gmail ---------------------------------------------------------------------------------------

_GMAIL_SYSTEM_LABELS = (
    "INBOX SENT IMPORTANT STARRED UNREAD DRAFT SPAM TRASH CATEGORY_PERSONAL CATEGORY_SOCIAL "
    "CATEGORY_PROMOTIONS CATEGORY_UPDATES CATEGORY_FORUMS CHAT"
).split()


class GmailData:
    """Messages in modseq order; message `i` is computed from (seed, i)."""

    def __init__(self, world: World) -> None:
        self.cfg = world.gmail
        self._key = _key(world.seed, _T_GMAIL)
        end_ms = int(world.anchor.timestamp() * 1000) - 3_600_000
        self._t0_ms = end_ms - 10 * 365 * _DAY_S * 1000
        self._step_ms = max(2, (end_ms - self._t0_ms) // self.cfg.messages)

    def _h(self, i: int) -> int:
        return mix(self._key + i)

    def modseq(self, i: int) -> int:
        """Strictly increasing; the last one is 2**64-1 like a real IMAP 64-bit counter at its top."""
        if i == self.cfg.messages - 1:
            return MAX_MODSEQ
        return 100_000 + i * 16 + (self._h(i) & 7)

    @property
    def highest_modseq(self) -> int:
        """The profile's highestModseq: the last message's modseq."""
        return self.modseq(self.cfg.messages - 1)

    def first_after(self, since_modseq: int) -> int:
        """Index of the first message whose modseq is > `since_modseq`."""
        return bisect.bisect_right(range(self.cfg.messages), since_modseq, key=self.modseq)

    def message_id(self, i: int) -> str:
        """Gmail-style 16-hex-digit id of message `i`."""
        return f"{mix(self._h(i)) | (1 << 60):016x}"

    @cached_property
    def label_ids(self) -> list[str]:
        """System labels first, then user labels (`Label_<n>`)."""
        n = self.cfg.labels
        system = _GMAIL_SYSTEM_LABELS[:n]
        return system + [f"Label_{k + 1}" for k in range(n - len(system))]

    def _labels_of(self, h: int) -> list[str]:
        ids = self.label_ids
        n = len(ids)
        sent = n > 1 and h % 5 == 0
        out = [ids[1] if sent else ids[0]]
        if n > 2 and (h >> 8) & 3 == 0:
            out.append(ids[2 + (h >> 10) % (n - 2)])
        if n > 2 and (h >> 16) & 7 == 0:
            extra = ids[2 + (h >> 20) % (n - 2)]
            if extra not in out:
                out.append(extra)
        return out

    @cached_property
    def labels(self) -> list[JSON]:
        """Label resources with their message counts (one pass over the mailbox, on first use)."""
        totals = dict.fromkeys(self.label_ids, 0)
        for i in range(self.cfg.messages):
            for label in self._labels_of(self._h(i)):
                totals[label] += 1
        return [
            {
                "id": lid,
                "name": lid.title().replace("_", " ") if k < len(_GMAIL_SYSTEM_LABELS) else WORDS[k].title(),
                "type": "system" if k < len(_GMAIL_SYSTEM_LABELS) else "user",
                "messagesTotal": totals[lid],
            }
            for k, lid in enumerate(self.label_ids)
        ]

    @cached_property
    def _threads(self) -> tuple[list[int], list[list[int]]]:
        """(thread of each message, messages of each thread). Thread starts are spread evenly over
        the mailbox; other messages reply to one of the 20 most recent threads."""
        n, t_total = self.cfg.messages, self.cfg.threads
        thread_of: list[int] = []
        members: list[list[int]] = []
        next_start = 0
        for i in range(n):
            if i == next_start and len(members) < t_total:
                members.append([i])
                thread_of.append(len(members) - 1)
                next_start = (len(members) * n) // t_total
            else:
                t = len(members) - 1 - self._h(i) % min(20, len(members))
                members[t].append(i)
                thread_of.append(t)
        return thread_of, members

    def _contact(self, h: int) -> str:
        first, last = FIRST[h & 15], LAST[(h >> 4) & 15]
        return f"{first} {last} <{first.lower()}.{last.lower()}@example.test>"

    def message(self, i: int) -> JSON:
        """Message `i` in the users.messages format (metadata plus a short body)."""
        h = self._h(i)
        h2 = mix(h)
        thread_of, members = self._threads
        ms = self._t0_ms + i * self._step_ms + h % self._step_ms
        labels = self._labels_of(h)
        me, other = self.cfg.email, self._contact(h >> 24)
        sender, to = (me, other) if labels[0] == "SENT" else (other, me)
        snippet = _text(h2)
        body = f"{snippet}\n".encode()
        when = datetime.fromtimestamp(ms / 1000, UTC)
        return {
            "id": self.message_id(i),
            "threadId": self.message_id(members[thread_of[i]][0]),
            "labelIds": labels,
            "snippet": snippet,
            "internalDate": str(ms),
            "modseq": self.modseq(i),
            "sizeEstimate": 1_500 + (h2 >> 40) % 60_000,
            "payload": {
                "mimeType": "text/plain",
                "headers": [
                    {"name": "From", "value": sender},
                    {"name": "To", "value": to},
                    {"name": "Subject", "value": _text(h2 >> 3).capitalize()},
                    {"name": "Date", "value": format_datetime(when)},
                ],
                "body": {"size": len(body), "data": base64.urlsafe_b64encode(body).decode()},
            },
        }

    def thread(self, t: int) -> JSON:
        """Thread `t`: its id is its first message's id, as in Gmail."""
        msgs = self._threads[1][t]
        first = msgs[0]
        return {
            "id": self.message_id(first),
            "snippet": _text(mix(self._h(first))),
            "historyId": str(self.modseq(msgs[-1])),
            "messageIds": [self.message_id(i) for i in msgs],
        }


# --- Slack ---------------------------------------------------------------------------------------


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
        return self._unique_ids("U0", _T_SLACK_USER, self.cfg.users, set())

    @cached_property
    def channel_ids(self) -> list[str]:
        """`C0` + 9 base-36 characters, unique; the special channel sits in the middle."""
        ids = self._unique_ids("C0", _T_SLACK_CHAN, self.cfg.channels, {self.cfg.special_channel_id})
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
            while (cid := prefix + _alnum(_key(self._seed, tag, k, salt), 9)) in taken:
                salt += 1  # practically never; keeps ids unique whatever the seed
            taken.add(cid)
            out.append(cid)
        return out

    @cached_property
    def message_counts(self) -> list[int]:
        """Messages per channel: skewed (log-normal weights), every channel at least one."""
        n = self.cfg.channels
        others = [k for k in range(n) if k != self.special_index]
        rng = random.Random(_key(self._seed, _T_SLACK_DIST))
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
        end_us = (self._anchor_s - 60) * _US
        for k, count in enumerate(self.message_counts):
            key = _key(self._seed, _T_SLACK_MSG, k)
            created = self._anchor_s - 30 * _DAY_S - key % (8 * 365 * _DAY_S)
            start_us = (created + 1) * _US
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
            ts = f"{us // _US}.{us % _US:06d}"
            msg: JSON = {
                "type": "message",
                "ts": ts,
                "user": users[(h >> 20) % n_users],
                "text": _text(mix(h)),
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
        h = _key(self._seed, _T_SLACK_USER, k, 1)
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
            "topic": {"value": _text(h >> 8)},
            "purpose": {"value": _text(mix(h))},
            "num_members": 2 + (h >> 28) % 300,
        }


# --- ChatGPT -------------------------------------------------------------------------------------

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
        self._key = _key(world.seed, _T_CHATGPT)
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
        create = self._anchor_s - 60 - (h % (3 * 365 * _DAY_S * _US)) / _US
        # Updated up to 60 days later, never after the anchor.
        window = min(60 * _DAY_S, self._anchor_s - 1 - create)
        update = create + window * ((h >> 20) % _US) / _US
        return round(create, 6), round(update, 6)

    @cached_property
    def by_update(self) -> list[int]:
        """Conversation indices, most recently updated first."""
        return sorted(range(self.cfg.conversations), key=lambda k: (-self.times(k)[1], k))

    def title(self, k: int) -> str:
        """A short deterministic title."""
        return _text(mix(self._h(k)) & ~7).capitalize()  # `& ~7` → always three words

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
                    "content": {"content_type": "text", "parts": [_text(mh) + "."]},
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


# --- Bank ----------------------------------------------------------------------------------------

# (description, category, min cents, max cents) of ordinary card spending.
_MERCHANTS = (
    ("GROCERY MARKET #1142", "groceries", 1_200, 16_000),
    ("CORNER CAFE", "dining", 350, 2_400),
    ("CITY TRANSIT", "transport", 250, 4_000),
    ("FUEL STATION 88", "transport", 2_500, 7_500),
    ("ONLINE BOOKS", "shopping", 900, 6_000),
    ("PHARMACY 24", "health", 500, 9_000),
    ("STREAMING SERVICE", "subscriptions", 999, 1_999),
    ("HARDWARE DEPOT", "home", 1_500, 12_000),
    ("TRATTORIA VERDE", "dining", 2_200, 11_000),
)


def _cents(c: int) -> str:
    return f"{'-' if c < 0 else ''}{abs(c) // 100}.{abs(c) % 100:02d}"


class BankData:
    """Transactions per calendar day, with running balances from the first day."""

    def __init__(self, world: World) -> None:
        self.cfg = world.bank
        self._key = _key(world.seed, _T_BANK)
        anchor = world.anchor.date()
        try:
            years_back = anchor.replace(year=anchor.year - self.cfg.years)
        except ValueError:  # 29 February
            years_back = anchor.replace(year=anchor.year - self.cfg.years, day=28)
        self.first_day = years_back - timedelta(days=self.cfg.extra_days)
        # The anchor is midnight: its own day has no transactions yet.
        self.last_day = anchor - timedelta(days=1)

    def day(self, d: date) -> list[tuple[str, str, int, str]]:
        """(id, description, amount cents, category) of the transactions on day `d`."""
        h = mix(self._key + d.toordinal())
        span = self.cfg.max_per_day - self.cfg.min_per_day + 1
        n = self.cfg.min_per_day + h % max(1, span)
        out = []
        for s in range(n):
            th = mix(h + s)
            # Fixed monthly items take a day's first slot, so the balance drifts slowly upward.
            if s == 0 and d.day in (1, 15):
                desc, cat, amount = "PAYROLL ACME CORP DIRECT DEP", "income", 290_000
            elif s == 0 and d.day == 3:
                desc, cat, amount = "RENT PAYMENT MAPLE APTS", "housing", -195_000
            elif s == 0 and d.day == 10:
                desc, cat, amount = "POWER AND LIGHT CO", "utilities", -(6_000 + (th >> 8) % 12_000)
            else:
                desc, cat, lo, hi = _MERCHANTS[th % len(_MERCHANTS)]
                amount = -(lo + (th >> 8) % (hi - lo))
                if (th >> 40) % 40 == 0:
                    desc, amount = f"REFUND {desc}", -amount
            out.append((f"TX{d:%Y%m%d}{s:02d}{th % 1000:03d}", desc, amount, cat))
        return out

    @cached_property
    def _opening(self) -> list[int]:
        """Balance at the start of each day, from `first_day` through `last_day`."""
        out = []
        balance = self.cfg.opening_balance_cents
        d = self.first_day
        while d <= self.last_day:
            out.append(balance)
            balance += sum(t[2] for t in self.day(d))
            d += timedelta(days=1)
        return out

    def rows(self, start: date, end: date) -> Iterator[tuple[str, str, str, str, str, str]]:
        """CSV rows (id, date, description, amount, balance, category) with date in [start, end]."""
        d = max(start, self.first_day)
        end = min(end, self.last_day)
        while d <= end:
            balance = self._opening[(d - self.first_day).days]
            for tid, desc, amount, cat in self.day(d):
                balance += amount
                yield tid, d.isoformat(), desc, _cents(amount), _cents(balance), cat
            d += timedelta(days=1)


class WorldData:
    """The generated data of one world, per service, each built on first use."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.gmail = GmailData(world)
        self.slack = SlackData(world)
        self.chatgpt = ChatGPTData(world)
        self.bank = BankData(world)
