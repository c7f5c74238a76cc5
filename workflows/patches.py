"""The `workflow.patched` ids: every change that alters a workflow's commands after histories
were recorded (tests/replay/). A run started before a change replays without it; a new one
takes it. Never rename one: a running workflow's history holds its marker.
"""

# ConnectorRunWorkflow claims its connector first: runs started before replay without the claim.
ONE_RUN_PER_CONNECTOR = "one-run-per-connector"
# A failed run's workflow ends Failed and a cancelled one Canceled (before, every run completed).
TEMPORAL_STATUS = "temporal-status-agrees"
# A cancel that arrives while the outcome is being written (a database outage can make that
# minutes) is told as too late, like any cancel after the commit.
LATE_CANCEL = "cancel-while-recording"
# GapRecoveryWorkflow's run ids come from the whole hint id and the recovery's first execution
# (they used 8 characters of the hint id, which requeued hints share).
WHOLE_HINT_RUN_IDS = "recovery-run-id-whole-hint"
# A step that failed for good (a defect, a result too large for Temporal: activities/failures.py)
# gives way to what the run knows without it, and the run ends with a recorded outcome (before,
# the workflow failed without one).
STEP_FAILED_FOR_GOOD = "step-failed-for-good"

# GapRecoveryWorkflow records how it ended (settled, gave up, cancelled and by whom) in
# PostgreSQL, so the present does not depend on Temporal's retention; a cancel that reaches it
# while a recovery run goes on ends it cancelled (it used to settle the run and go on).
RECOVERY_FATE = "recovery-records-its-end"

# A connector with a task queue of its own ([connectors.NAME] task_queue) is collected only
# there, and a run gives up waiting for a worker of it after its placement timeout.
PLACEMENT = "collect-on-connector-task-queue"
# A collect whose attempts a vanished worker spent (heartbeat timeouts: the attempts that a lost
# host's open polls on the server swallowed) runs again, with fresh attempts (tests/hosts/).
LOST_WORKER = "collect-again-after-lost-worker"

# A recovery that walks a stream (a checkpoint, stream or whole-run gap) asks its budget for its
# hint's estimate, all or nothing, and is charged after for what it re-collected beyond it
# (before, it asked for one item's units whatever it re-collected).
WALK_CHARGED = "walking-recovery-charged"
