"""The bank's synthetic checking account: transactions per day and running balances."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from functools import cached_property

from pdpp_orch.upstream.synth import T_BANK, keyed, mix
from pdpp_orch.upstream.world import World

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
        self._key = keyed(world.seed, T_BANK)
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
        """CSV rows (id, date, description, amount, balance, category) with date in [start, end)."""
        d = max(start, self.first_day)
        end = min(end, self.last_day + timedelta(days=1))
        while d < end:
            balance = self._opening[(d - self.first_day).days]
            for tid, desc, amount, cat in self.day(d):
                balance += amount
                yield tid, d.isoformat(), desc, _cents(amount), _cents(balance), cat
            d += timedelta(days=1)
