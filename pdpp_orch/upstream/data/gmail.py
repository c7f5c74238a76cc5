"""Gmail's synthetic mailbox: messages in modseq order, their threads and labels.

Message `i` is computed from (seed, i) when a page is served; only thread membership and label
totals are built, on first use.
"""

from __future__ import annotations

import base64
import bisect
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import cached_property

from pdpp_orch.upstream.synth import DAY_S, FIRST, JSON, LAST, T_GMAIL, WORDS, keyed, mix, phrase
from pdpp_orch.upstream.world import World

MAX_MODSEQ = 2**64 - 1

_GMAIL_SYSTEM_LABELS = (
    "INBOX SENT IMPORTANT STARRED UNREAD DRAFT SPAM TRASH CATEGORY_PERSONAL CATEGORY_SOCIAL "
    "CATEGORY_PROMOTIONS CATEGORY_UPDATES CATEGORY_FORUMS CHAT"
).split()


class GmailData:
    """Messages in modseq order; message `i` is computed from (seed, i)."""

    def __init__(self, world: World) -> None:
        self.cfg = world.gmail
        self._key = keyed(world.seed, T_GMAIL)
        end_ms = int(world.anchor.timestamp() * 1000) - 3_600_000
        self._t0_ms = end_ms - 10 * 365 * DAY_S * 1000
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
        snippet = phrase(h2)
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
                    {"name": "Subject", "value": phrase(h2 >> 3).capitalize()},
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
            "snippet": phrase(mix(self._h(first))),
            "historyId": str(self.modseq(msgs[-1])),
            "messageIds": [self.message_id(i) for i in msgs],
        }
