"""Timeouts and retry policies of the activities the workflows run."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Database activities take well under a second; a worker that died holding one is noticed after this.
SHORT = timedelta(seconds=30)
# A database outage delays a run's outcome, however long it lasts; it never replaces it (so no
# maximum of attempts: a retry a minute until PostgreSQL answers again).
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=0,
    non_retryable_error_types=["ConfigError"],
)
COLLECT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=5,
    non_retryable_error_types=["ConfigError"],
)
# Cursors up to max_state_bytes (64 MiB) commit in seconds; a dead worker's commit is retried
# after this.
COMMIT_TIMEOUT = timedelta(minutes=1)
# A collect attempt may take the run's whole duration, and then some to flush and exit.
COLLECT_GRACE = timedelta(seconds=600)
