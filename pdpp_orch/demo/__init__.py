"""The five seed cases of the partial-run question, end to end (`pdpp-orch demo`): what each
case is and must become (cases.py), and how the demo runs them (running.py)."""

from pdpp_orch.demo.cases import (
    DEMO_BUDGET_WINDOW,
    DEMO_PLAN,
    FIVE_YEARS,
    Case,
    CaseResult,
    cases,
    check,
    next_retry,
)
from pdpp_orch.demo.running import (
    DEMO_CANCEL,
    DemoRun,
    DemoWorld,
    RecoveryShown,
    cancel_waiting_recoveries,
    demo_world,
    prepare_inputs,
    reset_connectors,
    run_cases,
    run_demo,
    show_recovery,
    write_registry,
)

__all__ = [
    "DEMO_BUDGET_WINDOW",
    "DEMO_CANCEL",
    "DEMO_PLAN",
    "FIVE_YEARS",
    "Case",
    "CaseResult",
    "DemoRun",
    "DemoWorld",
    "RecoveryShown",
    "cancel_waiting_recoveries",
    "cases",
    "check",
    "demo_world",
    "next_retry",
    "prepare_inputs",
    "reset_connectors",
    "run_cases",
    "run_demo",
    "show_recovery",
    "write_registry",
]
