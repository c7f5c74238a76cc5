"""A time shown to a person reads one way on every surface: `2026-12-03 17:00 UTC`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from pdpp_orch.control.placement import WorkerWait
from pdpp_orch.models import RecoveryState, RecoveryStep
from pdpp_orch.times import utc
from tests.conftest import ROOT
from workflows import ui

AT = datetime(2026, 12, 3, 17, 0, 42, tzinfo=UTC)
# Where a time may be formatted other than by pdpp_orch.times, and why.
OWN_FORMATS = {
    "pdpp_orch/times.py": "the one format",
    "pdpp_orch/cli/logs.py": "a clock column (HH:MM:SS) under a header that gives the run's start",
    "pdpp_orch/report/html.py": "the chart's axis labels (HH:MM), titled `start (UTC)`",
}


def test_a_time_is_shown_in_utc_with_its_date() -> None:
    assert utc(AT) == "2026-12-03 17:00 UTC"
    assert utc(AT.astimezone(timezone(timedelta(hours=2)))) == "2026-12-03 17:00 UTC"  # converted
    assert utc(AT.replace(tzinfo=None)) == "2026-12-03 17:00 UTC"  # naive: UTC already


def test_the_web_ui_and_the_cli_say_a_wait_the_same_way() -> None:
    state = RecoveryState(step=RecoveryStep.WAITING_NOT_BEFORE, until=AT)
    assert ui.recovery_wait_why(state) == "until not_before 2026-12-03 17:00 UTC"  # was `17:00Z`
    wait = WorkerWait("laptop", AT, AT + timedelta(minutes=5), 1, None)
    assert "since 2026-12-03 17:00 UTC" in wait.line() and "fails at 2026-12-03 17:05 UTC" in wait.line()


def test_no_surface_formats_a_time_of_its_own() -> None:
    pattern = re.compile(r"%H:%M|strftime\(|\.isoformat\(\)\[|\[:19\]")
    found = set()
    for folder in (
        "pdpp_orch/cli",
        "pdpp_orch/present",
        "pdpp_orch/report",
        "pdpp_orch/control",
        "workflows",
    ):
        for path in (ROOT / folder).rglob("*.py"):
            if pattern.search(path.read_text(encoding="utf-8")):
                found.add(str(path.relative_to(ROOT)))
    for path in ("pdpp_orch/advice.py", "pdpp_orch/times.py"):
        if pattern.search((ROOT / path).read_text(encoding="utf-8")):
            found.add(path)
    assert found <= set(OWN_FORMATS), found - set(OWN_FORMATS)
