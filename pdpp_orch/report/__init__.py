"""`pdpp-orch report`: "am I missing anything?", answered per connector and stream — the
models (model.py), how they are derived from the store and the present (build.py), and the
self-contained HTML page (html.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pdpp_orch.report.build import build, fate_lines, latest_forward
from pdpp_orch.report.html import to_html
from pdpp_orch.report.model import ConnectorReport, Severity

__all__ = [
    "ConnectorReport",
    "Severity",
    "build",
    "fate_lines",
    "generated_at",
    "latest_forward",
    "to_html",
    "to_json",
]


def to_json(reports: list[ConnectorReport]) -> str:
    return json.dumps([r.model_dump(mode="json") for r in reports], indent=2)


def generated_at() -> datetime:
    return datetime.now(UTC)
