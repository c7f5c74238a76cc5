"""Cost budgets per connector: models and the pure arithmetic of ConnectorBudgetWorkflow.

A budget allows `units` cost units per fixed window. Windows are aligned to when the budget
first started and advance by whole windows, so a quiet week does not shift them. Everything
here travels through Temporal history: counters and our own request ids, never personal data.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

RECENT_MAX = 500
"""How many request ids (and as many charge ids) a budget remembers to answer retries."""

_WINDOW_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_WINDOW_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def parse_window(text: str) -> float:
    """Seconds in a window written as `24h`, `90m`, `30s`, `7d` or `1h30m` (units d, h, m, s,
    each at most once, largest first). Raises ValueError for anything else or a zero window."""
    s = text.strip().lower()
    parts = list(_WINDOW_PART.finditer(s))
    units = [p.group(2) for p in parts]
    order = list(_WINDOW_UNITS)
    if (
        not parts
        or "".join(p.group(0) for p in parts) != s
        or [order.index(u) for u in units] != sorted({order.index(u) for u in units})
    ):
        raise ValueError(
            f"budget window {text!r}: expected a duration such as '24h', '90m', '30s', '7d' or "
            "'1h30m' (units d, h, m, s, each at most once, largest first)"
        )
    seconds = sum(float(p.group(1)) * _WINDOW_UNITS[p.group(2)] for p in parts)
    if seconds <= 0:
        raise ValueError(f"budget window {text!r} must be longer than zero")
    return seconds


def format_window(seconds: float) -> str:
    """A window for display, in a form parse_window reads back: 86400 → '24h', 5400 → '1h30m'."""
    if seconds % 1:
        return f"{seconds:g}s"
    rest, out = int(seconds), ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        n, rest = divmod(rest, size)
        if n:
            out += f"{n}{unit}"
    return out or "0s"


def window_at(started: datetime, window_seconds: float, now: datetime) -> tuple[datetime, int]:
    """The start of the window that holds `now`, for windows of `window_seconds` beginning at
    `started`, and how many whole windows lie between the two (0 while `now` is in the first)."""
    length = timedelta(seconds=window_seconds)
    # timedelta // timedelta is exact integer microsecond arithmetic: no float drift at the edges.
    n = max(0, (now - started) // length)
    return started + n * length, n


class BudgetConfig(BaseModel):
    """`[connectors.NAME.budget] units, window`: units per window; `units` None is unlimited."""

    units: int | None = Field(default=None, ge=0, description="units per window; None: unlimited")
    window_seconds: float = Field(default=24 * 3600.0, gt=0)


class GrantRequest(BaseModel):
    """Ask for up to `units`; anything under `min_units` (or under `units`, if smaller) is
    not worth having, so such a request gets 0. `request_id` makes retries idempotent."""

    request_id: str = Field(min_length=1)
    units: int = Field(ge=0, description="units wanted")
    min_units: int = Field(default=1, ge=0)
    config: BudgetConfig


class Grant(BaseModel):
    """The answer to a GrantRequest (or a Charge). `remaining` is what is left in the window
    afterwards (None: unlimited); `retry_at` is when to ask again if fewer units than wanted
    were granted."""

    request_id: str
    granted: int
    remaining: int | None
    window_started: datetime
    window_ends: datetime
    retry_at: datetime | None = None


class Charge(BaseModel):
    """Units a forward run actually spent, reported after the fact. Always recorded: what
    exceeds the window's remaining units counts as `overspent`, never as negative remaining."""

    request_id: str = Field(min_length=1)
    units: int = Field(ge=0)
    config: BudgetConfig


class BudgetCall(BaseModel):
    """Input of the request_budget activity."""

    connector: str
    request: GrantRequest


class ChargeCall(BaseModel):
    """Input of the charge_budget activity."""

    connector: str
    charge: Charge


class BudgetStatus(BaseModel):
    """The budget as of now, for the `status` query and `pdpp-orch budget NAME --json`."""

    connector: str
    units: int | None
    window_seconds: float
    window_started: datetime
    window_ends: datetime
    spent: int
    remaining: int | None
    overspent: int = Field(description="charged beyond the units of the current window")
    granted_total: int
    charged_total: int
    overspent_total: int
    requests_total: int
    charges_total: int
    windows_elapsed: int = Field(description="whole windows since the budget first started")

    def at(self, now: datetime) -> BudgetStatus:
        """This status carried forward to `now`: windows that ended since are empty again.

        A query sees the workflow's time as of its last task, which may be days old when no
        one asked for units since; callers bring the answer up to their own clock with this."""
        started, n = window_at(self.window_started, self.window_seconds, now)
        if n == 0:
            return self
        return self.model_copy(
            update={
                "window_started": started,
                "window_ends": started + timedelta(seconds=self.window_seconds),
                "spent": 0,
                "remaining": self.units,
                "overspent": 0,
                "windows_elapsed": self.windows_elapsed + n,
            }
        )


class BudgetState(BaseModel):
    """Everything ConnectorBudgetWorkflow carries across continue-as-new.

    `spent` and `overspent` belong to the current window; the `*_total` counters and
    `windows_elapsed` run since the budget first started. `grants` and `charges` remember the
    last RECENT_MAX answers by request id, oldest first, so a retried call is answered again
    instead of spending twice. They are separate so a run may use one id for its request and
    for its charge."""

    config: BudgetConfig
    window_started: datetime
    spent: int = 0
    overspent: int = 0
    grants: dict[str, Grant] = Field(default_factory=dict)
    charges: dict[str, Grant] = Field(default_factory=dict)
    granted_total: int = 0
    charged_total: int = 0
    overspent_total: int = 0
    requests_total: int = 0
    charges_total: int = 0
    windows_elapsed: int = 0

    @property
    def window_ends(self) -> datetime:
        return self.window_started + timedelta(seconds=self.config.window_seconds)

    @property
    def remaining(self) -> int | None:
        if self.config.units is None:
            return None
        return max(0, self.config.units - self.spent)

    def roll(self, now: datetime) -> None:
        """Move to the window holding `now`; a new window starts with nothing spent."""
        started, n = window_at(self.window_started, self.config.window_seconds, now)
        if n:
            self.window_started = started
            self.windows_elapsed += n
            self.spent = 0
            self.overspent = 0

    def configure(self, config: BudgetConfig, now: datetime) -> None:
        """Adopt `config`. Units spent in this window stay spent, so lowering `units` below
        them leaves nothing remaining; a new window length keeps the window's start."""
        if config != self.config:
            self.config = config
            self.roll(now)

    def grant(self, req: GrantRequest, now: datetime) -> Grant:
        """Answer a request: min(wanted, remaining) if that reaches the request's minimum,
        else 0. A request id already answered gets the same answer and spends nothing."""
        if req.request_id in self.grants:
            return self.grants[req.request_id]
        self.roll(now)
        self.configure(req.config, now)
        remaining = self.remaining
        available = req.units if remaining is None else min(req.units, remaining)
        granted = available if available >= min(req.min_units, req.units) else 0
        self.spent += granted
        self.granted_total += granted
        self.requests_total += 1
        g = self._answer(req.request_id, granted)
        if granted < req.units:
            g.retry_at = g.window_ends
        _remember(self.grants, req.request_id, g)
        return g

    def charge(self, c: Charge, now: datetime) -> Grant:
        """Record units already spent; the answer's `granted` is the units charged. A charge
        id already recorded gets the same answer and is not counted again."""
        if c.request_id in self.charges:
            return self.charges[c.request_id]
        self.roll(now)
        self.configure(c.config, now)
        remaining = self.remaining
        over = 0 if remaining is None else max(0, c.units - remaining)
        self.spent += c.units - over
        self.overspent += over
        self.overspent_total += over
        self.charged_total += c.units
        self.charges_total += 1
        g = self._answer(c.request_id, c.units)
        _remember(self.charges, c.request_id, g)
        return g

    def status(self, connector: str, now: datetime) -> BudgetStatus:
        """The budget as it stands at `now`, without changing the state (queries must not)."""
        return BudgetStatus(
            connector=connector,
            units=self.config.units,
            window_seconds=self.config.window_seconds,
            window_started=self.window_started,
            window_ends=self.window_ends,
            spent=self.spent,
            remaining=self.remaining,
            overspent=self.overspent,
            granted_total=self.granted_total,
            charged_total=self.charged_total,
            overspent_total=self.overspent_total,
            requests_total=self.requests_total,
            charges_total=self.charges_total,
            windows_elapsed=self.windows_elapsed,
        ).at(now)

    def _answer(self, request_id: str, granted: int) -> Grant:
        return Grant(
            request_id=request_id,
            granted=granted,
            remaining=self.remaining,
            window_started=self.window_started,
            window_ends=self.window_ends,
        )


class BudgetInput(BaseModel):
    """Input of ConnectorBudgetWorkflow; `state` is set when it continues as new."""

    connector: str
    config: BudgetConfig
    state: BudgetState | None = None
    max_updates_before_continue: int = Field(default=1000, ge=1)


def _remember(recent: dict[str, Grant], request_id: str, g: Grant) -> None:
    recent[request_id] = g
    while len(recent) > RECENT_MAX:
        del recent[next(iter(recent))]
