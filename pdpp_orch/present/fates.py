"""The fate of one retry hint, from the ledger and what its recovery says of itself: waiting
(for not_before, the budget, a back-off), running, recovered, partly recovered, exhausted,
superseded by a later forward run, cancelled (by whom), stopped — each told with the command
that acts on it. Pure: the loader (pdpp_orch.control.present) gathers the inputs."""

from __future__ import annotations

from datetime import datetime

from pdpp_orch.advice import budget_wanted, when
from pdpp_orch.models import RecoveryEnding, RecoveryStep
from pdpp_orch.present.model import Fate, HintLedger, HintNow, RecoveryLook, WorkflowState
from pdpp_orch.times import utc

_WAITS = {
    RecoveryStep.WAITING_NOT_BEFORE: (Fate.WAITING, "waiting for not_before"),
    RecoveryStep.WAITING_BUDGET: (Fate.WAITING_BUDGET, "waiting for the budget's next window"),
    RecoveryStep.BACKING_OFF: (Fate.BACKING_OFF, "backing off after a round without progress"),
    RecoveryStep.WAITING_LEASES: (Fate.BACKING_OFF, "waiting for gaps leased elsewhere to come back"),
}
_STOPPED = {
    WorkflowState.COMPLETED: "its recovery gave up",
    WorkflowState.FAILED: "its recovery failed",
    WorkflowState.TERMINATED: "its recovery was terminated",
    WorkflowState.TIMED_OUT: "its recovery timed out",
    WorkflowState.ABSENT: "no recovery is running (none was started, or Temporal no longer remembers it)",
}


def _t(at: datetime | None) -> str:
    return f" at {utc(at)}" if at else ""


def _what(h: HintLedger) -> str:
    where = f" of {h.stream}" if h.stream and h.stream != "*" else ""
    return f"{h.reason}{where}"


def _runs(runs: list[str]) -> str:
    if not runs:
        return ""
    return f" by {runs[-1]}" if len(runs) == 1 else f" by {len(runs)} runs, the last {runs[-1]}"


def _reasons(h: HintLedger) -> str:
    return ", ".join(f"{n:,} {r}" for r, n in sorted(h.terminal_reasons.items())) or "terminal"


def cancelled_by(said: str | None) -> str:
    """Who cancelled, in words: the cancel's reason as its sender wrote it."""
    return said.strip() if said and said.strip() else "someone who gave no reason (the web UI, `temporal`)"


def _settled(h: HintLedger, base: HintNow, c: str, runnable: str) -> HintNow:
    """A hint with no open gap left: recovered, superseded, partly recovered or exhausted."""
    if h.terminal == 0 and h.recovered_by and h.recovered_by_forward == h.recovered_by:
        by = h.recovered_by[-1]
        says = f"{_what(h)}: superseded, closed by the later run {by}{_t(h.settled_at)}"
        return base.model_copy(update={"fate": Fate.SUPERSEDED, "by": by, "says": says})
    if h.terminal == 0:
        says = f"{_what(h)}: all {h.recovered:,} recovered{_runs(h.recovered_by)}{_t(h.settled_at)}"
        return base.model_copy(update={"fate": Fate.RECOVERED, "says": says})
    command = (
        f"`pdpp-orch gaps list {c} --status terminal` lists them;"
        f" `pdpp-orch gaps requeue GAP_ID` tries one again{runnable}"
    )
    if h.recovered:
        says = (
            f"{_what(h)}: {h.recovered:,} of {h.recovered + h.terminal:,} recovered{_runs(h.recovered_by)},"
            f" {_reasons(h)}: no longer retried{_t(h.settled_at)}"
        )
        return base.model_copy(update={"fate": Fate.PARTLY_RECOVERED, "says": says, "command": command})
    says = f"{_what(h)}: none recovered, {_reasons(h)}: no longer retried{_t(h.settled_at)}"
    return base.model_copy(update={"fate": Fate.EXHAUSTED, "says": says, "command": command})


def _unanswered(h: HintLedger, look: RecoveryLook, base: HintNow, c: str, now: datetime) -> HintNow:
    """A running recovery that did not say what it is doing (no worker answered its query)."""
    why = f"no worker polls its task queue {look.no_worker}" if look.no_worker else "no worker answered"
    show = f"`pdpp-orch recover show {c}`; is `pdpp-orch worker` up?"
    if h.leased:
        says = f"{h.open:,} × {_what(h)} open, {h.leased:,} leased to a run of {look.workflow_id} ({why})"
        return base.model_copy(update={"fate": Fate.RUNNING, "says": says, "command": show})
    until = f", until {when(h.next_retry, now)}" if h.next_retry else ""
    says = f"retry {h.open:,} × {_what(h)}: waiting{until}, by {look.workflow_id} ({why})"
    return base.model_copy(
        update={"fate": Fate.WAITING, "until": h.next_retry, "says": says, "command": show}
    )


def _live(h: HintLedger, look: RecoveryLook, base: HintNow, c: str, now: datetime) -> HintNow:
    """A running recovery: what it waits for and until when, or the recovery run in progress."""
    so_far = f" ({h.recovered:,} recovered so far)" if h.recovered else ""
    state = look.live
    if state is None:
        return _unanswered(h, look, base, c, now)
    if state.step is not RecoveryStep.RECOVERING and state.step not in _WAITS:
        doing = state.step.value.replace("_", " ")
        says = f"retry {h.open:,} × {_what(h)}: {look.workflow_id} is {doing}{so_far}"
        return base.model_copy(
            update={"fate": Fate.RUNNING, "says": says, "command": f"`pdpp-orch recover show {c}`"}
        )
    if state.step is RecoveryStep.RECOVERING:
        says = (
            f"retry {h.open:,} × {_what(h)}: recovery run {state.run_id} (round {state.round})"
            f" in progress{so_far}"
        )
        follow = f"`pdpp-orch watch {state.run_id}` follows it"
        return base.model_copy(
            update={"fate": Fate.RUNNING, "run_id": state.run_id, "says": says, "command": follow}
        )
    fate, why = _WAITS[state.step]
    late = " (overdue: is a worker up?)" if state.until and state.until < now else ""
    until = f", until {when(state.until, now)}{late}" if state.until else ""
    says = f"retry {h.open:,} × {_what(h)}: {why}{budget_wanted(state)}{until}, by {look.workflow_id}{so_far}"
    command = (
        f"`pdpp-orch budget {c}` shows the budget"
        if fate is Fate.WAITING_BUDGET
        else f"`pdpp-orch recover now {c}` brings it forward"
    )
    return base.model_copy(update={"fate": fate, "until": state.until, "says": says, "command": command})


def _ended(h: HintLedger, look: RecoveryLook, base: HintNow, c: str, runnable: str) -> HintNow:
    """Gaps open and no recovery on them: cancelled (by whom), stopped, or not known."""
    again = f"`pdpp-orch recover now {c}` starts it again{runnable}"
    end = look.ended
    open_ = f"{h.open:,} × {_what(h)} open"
    if look.state is WorkflowState.UNREACHABLE:
        says = f"{open_}: Temporal did not answer for {look.workflow_id}"
        show = f"`pdpp-orch recover show {c}`"
        return base.model_copy(update={"fate": Fate.UNKNOWN, "says": says, "command": show})
    if (end is not None and end.ending is RecoveryEnding.CANCELLED) or look.state is WorkflowState.CANCELLED:
        by = cancelled_by(end.said if end else None)
        at = end.at if end else None
        says = f"{open_}: its recovery {look.workflow_id} was cancelled by {by}{_t(at)}"
        update = {"fate": Fate.CANCELLED, "by": by, "at": at, "says": says, "command": again}
        return base.model_copy(update=update)
    why = _STOPPED.get(look.state, "its recovery stopped")
    if end is not None and end.ending is RecoveryEnding.GAVE_UP:
        why = f"its recovery gave up after {end.runs} run(s)"
    says = f"{open_}: {why}{_t(end.at if end else None)}"
    return base.model_copy(update={"fate": Fate.STOPPED, "says": says, "command": again})


def hint_now(h: HintLedger, look: RecoveryLook, connector: str, now: datetime, runnable: str = "") -> HintNow:
    """The fate of hint `h`. `runnable` is said after a command that needs the connector in the
    registry the CLI reads and a worker that knows it (empty: it works)."""
    base = HintNow(
        hint_id=h.hint_id,
        workflow_id=look.workflow_id,
        stream=h.stream,
        reason=h.reason,
        fate=Fate.UNKNOWN,
        open=h.open,
        recovered=h.recovered,
        terminal=h.terminal,
        at=h.settled_at,
        by=h.recovered_by[-1] if h.recovered_by else None,
        says="",
    )
    if h.open == 0:
        return _settled(h, base, connector, runnable)
    if look.state is WorkflowState.RUNNING:
        return _live(h, look, base, connector, now)
    return _ended(h, look, base, connector, runnable)
