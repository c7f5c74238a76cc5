"""Fault plans: which requests of which route fail, how, and for how long.

A plan is data (JSON, pydantic-validated) so tests, presets and the CLI share one format. The
`FaultEngine` resolves each fault's target ids once against the world (a `sample` is a seeded
choice from the route's id universe) and then answers, per request, whether a fault fires.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Every counted route and the request parameter that identifies a resource on it (None: the
# route has no per-resource id, so faults on it match every request).
ROUTES: dict[str, str | None] = {
    "gmail.profile": None,
    "gmail.labels": None,
    "gmail.threads": None,
    "gmail.messages": None,
    "slack.users": None,
    "slack.channels": None,
    "slack.history": "channel",
    "chatgpt.list": None,
    "chatgpt.conversation": "conversation id",
    "bank.export": None,
}
SLACK_ROUTES = frozenset({"slack.users", "slack.channels", "slack.history"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Sample(_Model):
    """`count` ids chosen from the route's id universe by a RNG seeded with `seed`."""

    count: int = Field(ge=0)
    seed: int = 0


class Fault(_Model):
    """One failure rule. Without `ids` and `sample` it matches every request of its route."""

    route: str
    ids: list[str] | None = None
    sample: Sample | None = None
    status: int = Field(500, ge=200, le=599)
    retry_after: int | None = Field(None, ge=0)
    times: int | None = Field(None, ge=0, description="fires this many times per id; null = always")
    until: datetime | None = Field(None, description="fires only while the server clock is before this")
    body: Any = None
    note: str | None = None

    @field_validator("until")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        # A naive timestamp in a plan file means UTC, like the rest of the world.
        return v.replace(tzinfo=UTC) if v is not None and v.tzinfo is None else v

    @model_validator(mode="after")
    def _known_route(self) -> Fault:
        if self.route not in ROUTES:
            raise ValueError(f"unknown route {self.route!r}; known: {', '.join(ROUTES)}")
        if ROUTES[self.route] is None and (self.ids is not None or self.sample is not None):
            raise ValueError(f"route {self.route!r} has no ids; drop `ids`/`sample` to match every request")
        return self


class Limits(_Model):
    """Service limits that are not failures of single requests."""

    bank_max_range_days: int | None = Field(None, ge=1)


class Quirks(_Model):
    """Behaviours of a real service that broke a real connector."""

    gmail_bigint_state: bool = False

    def active(self, service: str) -> list[str]:
        """Names of the quirks switched on for `service` (the part after `<service>_`)."""
        prefix = f"{service}_"
        return [k.removeprefix(prefix) for k, on in self.model_dump().items() if on and k.startswith(prefix)]


class FaultPlan(_Model):
    """Faults (first firing one wins), limits and quirks for the whole simulated world."""

    description: str | None = None
    faults: list[Fault] = []
    limits: Limits = Limits()
    quirks: Quirks = Quirks()


PRESET_DIR = resources.files("pdpp_orch.upstream") / "presets"


def preset_plans() -> list[str]:
    """Names of the bundled plans (`case-a`, …), usable wherever a plan file is."""
    return sorted(
        p.name.removeprefix("plan-").removesuffix(".json")
        for p in PRESET_DIR.iterdir()
        if p.name.startswith("plan-") and p.name.endswith(".json")
    )


def load_plan(spec: str | Path) -> FaultPlan:
    """A plan from a JSON file, or a bundled preset by name (`case-c` or `plan-case-c`)."""
    path = Path(spec)
    if path.is_file():
        return FaultPlan.model_validate_json(path.read_text())
    name = str(spec).removeprefix("plan-").removesuffix(".json")
    preset = PRESET_DIR / f"plan-{name}.json"
    if preset.is_file():
        return FaultPlan.model_validate_json(preset.read_text())
    raise ValueError(f"no plan file {str(spec)!r} and no preset of that name ({', '.join(preset_plans())})")


def error_body(route: str, fault: Fault) -> Any:
    """The JSON body a firing fault returns: its own `body`, else a route-style default."""
    if fault.body is not None:
        return fault.body
    body: dict[str, Any]
    if route in SLACK_ROUTES:
        slack_errors = {429: "ratelimited", 500: "internal_error"}
        reason = slack_errors.get(fault.status) or _phrase(fault.status).lower().replace(" ", "_")
        body = {"ok": False, "error": reason}
    else:
        body = {"error": _phrase(fault.status), "status": fault.status}
    if fault.retry_after is not None:
        body["retry_after"] = fault.retry_after
    return body


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class FaultEngine:
    """A plan resolved against a world's ids, plus how often each fault fired for each id."""

    def __init__(self, plan: FaultPlan, universe: Callable[[str], Sequence[str]]) -> None:
        self.plan = plan
        self._targets: list[list[str] | None] = [self._resolve(f, universe) for f in plan.faults]
        self._target_sets = [None if t is None else frozenset(t) for t in self._targets]
        self._by_route: dict[str, list[int]] = {}
        for k, f in enumerate(plan.faults):
            self._by_route.setdefault(f.route, []).append(k)
        self._fired: Counter[tuple[int, str]] = Counter()

    @staticmethod
    def _resolve(fault: Fault, universe: Callable[[str], Sequence[str]]) -> list[str] | None:
        if fault.ids is None and fault.sample is None:
            return None
        chosen = list(fault.ids or [])
        if fault.sample is not None:
            ids = universe(fault.route)
            # Sampling from the world's own order keeps the choice stable for a given world + seed;
            # a count beyond the universe takes all of it (GET /plan shows the resolved count).
            chosen += random.Random(fault.sample.seed).sample(list(ids), min(fault.sample.count, len(ids)))
        return list(dict.fromkeys(chosen))

    def match(self, route: str, rid: str | None, now: datetime) -> Fault | None:
        """The first fault of `route` that fires for id `rid` now, counting the firing; else None."""
        for k in self._by_route.get(route, ()):
            fault = self.plan.faults[k]
            if fault.until is not None and now >= fault.until:
                continue
            targets = self._target_sets[k]
            if targets is not None and rid not in targets:
                continue
            key = (k, rid or "")
            if fault.times is not None and self._fired[key] >= fault.times:
                continue
            self._fired[key] += 1
            return fault
        return None

    def targets(self, index: int) -> list[str] | None:
        """The ids fault `index` targets, or None when it matches every request of its route."""
        return self._targets[index]

    def reset(self) -> None:
        """Forget how often faults fired (so `times` starts again)."""
        self._fired.clear()

    def describe(self) -> dict[str, Any]:
        """The plan as JSON, each fault with `resolved_count` (null: matches every request)."""
        out = self.plan.model_dump(mode="json")
        for f, t in zip(out["faults"], self._targets, strict=True):
            f["resolved_count"] = None if t is None else len(t)
        return out
