"""The client side: what the CLI, Schedules and the demo use to act on the orchestrator —
find the stack, start runs and recoveries, requeue gaps, manage schedules, read budgets. The
same inputs and summaries whoever starts a workflow; no SQL (that is the store's) and no
rendering (that is the CLI's)."""


class UsageError(Exception):
    """Something the operator must fix (the CLI exits with status 2)."""
