"""ConnectorBudgetWorkflow on the time-skipping server, its activities, and the pure window math."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.budget import BudgetActivities
from pdpp_orch.budget import (
    RECENT_MAX,
    BudgetCall,
    BudgetConfig,
    BudgetInput,
    BudgetState,
    BudgetStatus,
    Charge,
    ChargeCall,
    Grant,
    GrantRequest,
    format_window,
    parse_window,
    window_at,
)
from pdpp_orch.control.budget import budget_status
from workflows.budget import ConnectorBudgetWorkflow
from workflows.ids import budget_workflow_id

DAY = 24 * 3600.0
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class Budget:
    """One test's connector, its budget worker and shortcuts to the activities."""

    def __init__(self, env: WorkflowEnvironment, task_queue: str):
        self.env = env
        self.client = env.client
        self.acts = BudgetActivities(env.client, task_queue)
        self.task_queue = task_queue
        self.connector = f"c{uuid.uuid4().hex[:8]}"
        self.config = BudgetConfig(units=2000, window_seconds=DAY)

    @property
    def handle(self) -> WorkflowHandle[ConnectorBudgetWorkflow, None]:
        return self.client.get_workflow_handle_for(
            ConnectorBudgetWorkflow.run, budget_workflow_id(self.connector)
        )

    async def request(
        self, request_id: str, units: int, min_units: int = 1, config: BudgetConfig | None = None
    ) -> Grant:
        req = GrantRequest(
            request_id=request_id, units=units, min_units=min_units, config=config or self.config
        )
        call = BudgetCall(connector=self.connector, request=req)
        return await ActivityEnvironment().run(self.acts.request_budget, call)

    async def charge(self, request_id: str, units: int) -> Grant:
        c = Charge(request_id=request_id, units=units, config=self.config)
        return await ActivityEnvironment().run(
            self.acts.charge_budget, ChargeCall(connector=self.connector, charge=c)
        )

    async def status(self) -> BudgetStatus:
        s = await budget_status(self.client, self.connector, await self.env.get_current_time())
        assert s is not None
        return s

    async def skip_to(self, when: datetime) -> None:
        """Let the test server's clock reach `when` (time-skipping, not real sleeping)."""
        now = await self.env.get_current_time()
        if when > now:
            await self.env.sleep(when - now)


@pytest.fixture
async def budget(time_env: WorkflowEnvironment) -> AsyncIterator[Budget]:
    b = Budget(time_env, f"tq-{uuid.uuid4().hex[:10]}")
    async with Worker(
        time_env.client,
        task_queue=b.task_queue,
        workflows=[ConnectorBudgetWorkflow],
        activities=[b.acts.request_budget, b.acts.charge_budget],
    ):
        yield b


# --- on the time-skipping server ------------------------------------------------------------


async def test_grant_is_at_most_remaining_and_retry_at_is_window_end(budget: Budget) -> None:
    first = await budget.request("r1", 1500)
    assert (first.granted, first.remaining, first.retry_at) == (1500, 500, None)
    assert first.window_ends - first.window_started == timedelta(days=1)
    second = await budget.request("r2", 1500)
    assert (second.granted, second.remaining) == (500, 0)
    assert second.retry_at == second.window_ends == first.window_ends
    third = await budget.request("r3", 10)
    assert (third.granted, third.remaining, third.retry_at) == (0, 0, first.window_ends)


async def test_min_units_refuses_a_grant_too_small_to_use(budget: Budget) -> None:
    await budget.request("r1", 1900)
    small = await budget.request("r2", 500, min_units=200)
    assert (small.granted, small.remaining, small.retry_at) == (0, 100, small.window_ends)
    enough = await budget.request("r3", 500, min_units=100)
    assert (enough.granted, enough.remaining) == (100, 0)


async def test_budget_refills_after_the_window_passes(budget: Budget) -> None:
    spent = await budget.request("r1", 2000)
    assert spent.remaining == 0
    await budget.env.sleep(timedelta(hours=24))
    refilled = await budget.request("r2", 2000)
    assert (refilled.granted, refilled.remaining, refilled.retry_at) == (2000, 0, None)
    assert refilled.window_started == spent.window_ends
    status = await budget.status()
    assert (status.spent, status.windows_elapsed, status.granted_total) == (2000, 1, 4000)


async def test_status_counts_windows_that_passed_without_requests(budget: Budget) -> None:
    first = await budget.request("r1", 100)
    await budget.env.sleep(timedelta(hours=49))
    status = await budget.status()
    assert (status.spent, status.remaining, status.windows_elapsed) == (0, 2000, 2)
    assert status.window_started == first.window_started + timedelta(days=2)
    assert status.granted_total == 100


async def test_4188_units_at_2000_per_window_take_three_windows(budget: Budget) -> None:
    left, grants, per_window = 4188, list[int](), dict[datetime, int]()
    for i in range(10):
        if left == 0:
            break
        g = await budget.request(f"recover-{i}", left)
        if g.granted:
            grants.append(g.granted)
            per_window[g.window_started] = per_window.get(g.window_started, 0) + g.granted
            left -= g.granted
        if g.retry_at:
            await budget.skip_to(g.retry_at)
    assert grants == [2000, 2000, 188]
    assert len(per_window) == 3 and all(v <= 2000 for v in per_window.values())
    status = await budget.status()
    assert (status.windows_elapsed, status.spent, status.remaining) == (2, 188, 1812)


async def test_20_concurrent_requests_never_grant_more_than_the_units(budget: Budget) -> None:
    await budget.request("warm-up", 0)  # starts the workflow through the activity
    reqs = [GrantRequest(request_id=f"r{i}", units=150, config=budget.config) for i in range(20)]
    grants = await asyncio.gather(
        *(budget.handle.execute_update(ConnectorBudgetWorkflow.request, r) for r in reqs)
    )
    assert sum(g.granted for g in grants) == 2000
    assert all(g.remaining is not None and g.remaining >= 0 for g in grants)
    assert (await budget.status()).spent == 2000


async def test_concurrent_requests_across_continue_as_new_never_over_grant(budget: Budget) -> None:
    await budget.client.start_workflow(
        ConnectorBudgetWorkflow.run,
        BudgetInput(connector=budget.connector, config=budget.config, max_updates_before_continue=3),
        id=budget_workflow_id(budget.connector),
        task_queue=budget.task_queue,
    )
    grants = await asyncio.gather(*(budget.request(f"r{i}", 150) for i in range(20)))
    assert sum(g.granted for g in grants) == 2000
    status = await budget.status()
    assert (status.spent, status.requests_total) == (2000, 20)


async def test_the_same_request_id_twice_spends_once(budget: Budget) -> None:
    first = await budget.request("retry-me", 700)
    again = await budget.request("retry-me", 700)
    assert again == first
    status = await budget.status()
    assert (status.spent, status.remaining, status.requests_total) == (700, 1300, 1)


async def test_charge_reduces_grants_never_below_zero_and_records_overspend(
    budget: Budget,
) -> None:
    charged = await budget.charge("forward-1", 1800)
    assert (charged.granted, charged.remaining) == (1800, 200)
    assert (await budget.request("r1", 500)).granted == 200
    over = await budget.charge("forward-2", 300)
    assert over.remaining == 0
    assert await budget.charge("forward-2", 300) == over  # a retried charge counts once
    status = await budget.status()
    assert (status.spent, status.remaining, status.overspent, status.overspent_total) == (2000, 0, 300, 300)
    assert (status.charged_total, status.charges_total) == (2100, 2)


async def test_a_request_and_a_charge_may_share_an_id(budget: Budget) -> None:
    assert (await budget.request("run-1", 100)).granted == 100
    assert (await budget.charge("run-1", 150)).remaining == 1750
    assert (await budget.status()).spent == 250


async def test_continue_as_new_keeps_spent_window_and_request_memory(budget: Budget) -> None:
    h = await budget.client.start_workflow(
        ConnectorBudgetWorkflow.run,
        BudgetInput(connector=budget.connector, config=budget.config, max_updates_before_continue=5),
        id=budget_workflow_id(budget.connector),
        task_queue=budget.task_queue,
    )
    first_run = h.result_run_id
    before = [await budget.request(f"r{i}", 100) for i in range(5)]
    assert (await budget.handle.describe()).run_id != first_run
    assert await budget.request("r0", 100) == before[0]
    after = await budget.request("r5", 100)
    assert (after.granted, after.remaining, after.window_started) == (100, 1400, before[0].window_started)
    status = await budget.status()
    assert (status.spent, status.requests_total, status.windows_elapsed) == (600, 6, 0)


async def test_unlimited_budget_grants_everything(budget: Budget) -> None:
    budget.config = BudgetConfig(units=None, window_seconds=DAY)
    grants = [await budget.request(f"r{i}", 1_000_000) for i in range(3)]
    assert all((g.granted, g.remaining, g.retry_at) == (1_000_000, None, None) for g in grants)
    assert (await budget.charge("c", 5)).remaining is None
    status = await budget.status()
    assert (status.units, status.remaining, status.spent) == (None, None, 3_000_005)


async def test_lowered_units_apply_to_the_current_window(budget: Budget) -> None:
    assert (await budget.request("r1", 800)).remaining == 1200
    budget.config = BudgetConfig(units=1000, window_seconds=DAY)
    g = await budget.request("r2", 800)
    assert (g.granted, g.remaining) == (200, 0)
    budget.config = BudgetConfig(units=500, window_seconds=DAY)
    assert (await budget.request("r3", 1)).granted == 0
    status = await budget.status()
    assert (status.units, status.spent, status.remaining) == (500, 1000, 0)


async def test_activity_starts_the_workflow_when_missing_and_reuses_it_when_present(budget: Budget) -> None:
    assert await budget_status(budget.client, budget.connector) is None
    await budget.request("r1", 100)
    run_id = (await budget.handle.describe()).run_id
    await budget.request("r2", 100)
    await budget.charge("c1", 100)
    assert (await budget.handle.describe()).run_id == run_id
    assert (await budget.status()).spent == 300


async def test_activity_starts_a_new_budget_after_termination(budget: Budget) -> None:
    await budget.request("r1", 2000)
    run_id = (await budget.handle.describe()).run_id
    await budget.handle.terminate("operator reset")
    g = await budget.request("r2", 100)
    assert (g.granted, g.remaining) == (100, 1900)
    assert (await budget.handle.describe()).run_id != run_id


# --- pure: parse_window and the window math -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("24h", DAY),
        ("90m", 5400),
        ("30s", 30),
        ("7d", 7 * DAY),
        ("1h30m", 5400),
        (" 1d12h ", 1.5 * DAY),
        ("1.5h", 5400),
    ],
)
def test_parse_window(text: str, seconds: float) -> None:
    assert parse_window(text) == seconds


@pytest.mark.parametrize("text", ["", "24", "h", "24x", "30m1h", "1h1h", "-1h", "0s", "1h 30m", "one day"])
def test_parse_window_rejects_with_a_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match="budget window"):
        parse_window(text)


def test_format_window_round_trips() -> None:
    for text in ("24h", "1h30m", "30s", "1m5s"):
        assert format_window(parse_window(text)) == text
    assert format_window(0.5) == "0.5s"


def test_window_at_advances_by_whole_windows_from_the_first_start() -> None:
    assert window_at(T0, 3600, T0) == (T0, 0)
    assert window_at(T0, 3600, T0 + timedelta(minutes=59, seconds=59, microseconds=999999)) == (T0, 0)
    assert window_at(T0, 3600, T0 + timedelta(hours=1)) == (T0 + timedelta(hours=1), 1)
    assert window_at(T0, 3600, T0 + timedelta(hours=5, minutes=30)) == (T0 + timedelta(hours=5), 5)
    assert window_at(T0, 3600, T0 - timedelta(hours=1)) == (T0, 0)


def state(units: int | None = 100, window: float = 3600) -> BudgetState:
    return BudgetState(config=BudgetConfig(units=units, window_seconds=window), window_started=T0)


def req(rid: str, units: int, state_: BudgetState, min_units: int = 1) -> GrantRequest:
    return GrantRequest(request_id=rid, units=units, min_units=min_units, config=state_.config)


def test_state_rolls_to_the_aligned_window_and_resets_spent() -> None:
    s = state()
    assert s.grant(req("a", 100, s), T0 + timedelta(minutes=10)).granted == 100
    g = s.grant(req("b", 30, s), T0 + timedelta(hours=3, minutes=20))
    assert (g.granted, g.remaining, g.window_started) == (30, 70, T0 + timedelta(hours=3))
    assert (s.spent, s.windows_elapsed, s.granted_total, s.requests_total) == (30, 3, 130, 2)


def test_status_reports_the_window_at_now_without_changing_the_state() -> None:
    s = state()
    s.grant(req("a", 60, s), T0)
    st = s.status("x", T0 + timedelta(hours=2, minutes=1))
    assert (st.spent, st.remaining, st.windows_elapsed) == (0, 100, 2)
    assert st.window_started == T0 + timedelta(hours=2) and st.window_ends == T0 + timedelta(hours=3)
    assert (s.spent, s.window_started, s.windows_elapsed) == (60, T0, 0)


def test_min_units_above_wanted_does_not_starve_the_request() -> None:
    s = state()
    s.grant(req("a", 95, s), T0)
    assert s.grant(req("b", 5, s, min_units=10), T0).granted == 5
    assert s.grant(req("c", 0, s), T0).granted == 0


def test_charge_caps_spent_at_units_and_keeps_overspend_per_window() -> None:
    s = state()
    g = s.charge(Charge(request_id="c", units=130, config=s.config), T0)
    assert (g.granted, g.remaining, s.spent, s.overspent) == (130, 0, 100, 30)
    s.roll(T0 + timedelta(hours=1))
    assert (s.spent, s.overspent, s.overspent_total, s.charged_total) == (0, 0, 30, 130)


def test_longer_window_keeps_its_start_and_shorter_one_rolls() -> None:
    s = state()
    s.grant(req("a", 50, s), T0)
    s.configure(BudgetConfig(units=100, window_seconds=2 * 3600), T0 + timedelta(minutes=90))
    assert (s.window_started, s.spent) == (T0, 50)
    s.configure(BudgetConfig(units=100, window_seconds=1800), T0 + timedelta(minutes=95))
    assert (s.window_started, s.spent, s.windows_elapsed) == (T0 + timedelta(minutes=90), 0, 3)


def test_request_memory_is_bounded_and_survives_serialisation() -> None:
    s = state(units=None)
    for i in range(RECENT_MAX + 20):
        s.grant(req(f"r{i}", 1, s), T0)
    assert len(s.grants) == RECENT_MAX and "r0" not in s.grants and f"r{RECENT_MAX + 19}" in s.grants
    again = BudgetState.model_validate_json(s.model_dump_json())
    assert list(again.grants) == list(s.grants) and again == s
