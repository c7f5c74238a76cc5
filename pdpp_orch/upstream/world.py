"""The synthetic world behind the simulated upstreams: its seed, anchor and sizes (pydantic).

Everything served is a pure function of (world seed, service, index): see `synth` for the
derivation and `gmail`, `slack`, `chatgpt` and `bank` for each service's data.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

ANCHOR = datetime(2026, 4, 20, tzinfo=UTC)
SPECIAL_CHANNEL = "C017NG64T24"


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


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
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
