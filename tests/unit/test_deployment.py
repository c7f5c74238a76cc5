"""Worker Versioning's pure parts: the settings a worker joins with, and which build a rollback
returns to."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion

from pdpp_orch.control.deployment import Build, BuildStatus, Deployment, previous_build
from pdpp_orch.settings import Settings
from workflows.versioning import UNVERSIONED, VERSIONED


def behaviours(workflows: list[type]) -> dict[str, VersioningBehavior]:
    defns = [getattr(w, "__temporal_workflow_definition") for w in workflows]
    return {d.name: d.versioning_behavior for d in defns}


def test_a_versioned_worker_registers_every_workflow_with_its_behaviour() -> None:
    # A versioned worker refuses to start with a workflow of no behaviour, and an unversioned
    # one cannot run a workflow that declares one: every workflow is in both lists.
    assert behaviours(VERSIONED) == {
        "ConnectorRunWorkflow": VersioningBehavior.PINNED,
        "GapRecoveryWorkflow": VersioningBehavior.AUTO_UPGRADE,
        "ConnectorBudgetWorkflow": VersioningBehavior.AUTO_UPGRADE,
        "ResolveConnectorWorkflow": VersioningBehavior.PINNED,
    }
    assert behaviours(UNVERSIONED) == dict.fromkeys(behaviours(VERSIONED), VersioningBehavior.UNSPECIFIED)


def test_a_worker_is_unversioned_unless_it_has_a_build_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PDPP_WORKER_BUILD_ID", raising=False)
    monkeypatch.delenv("PDPP_WORKER_DEPLOYMENT", raising=False)
    assert Settings().worker_version() is None
    monkeypatch.setenv("PDPP_WORKER_BUILD_ID", "  ")
    assert Settings().worker_version() is None
    monkeypatch.setenv("PDPP_WORKER_BUILD_ID", "2026.12.04-abc123")
    assert Settings().worker_version() == WorkerDeploymentVersion("pdpp-orchestrator", "2026.12.04-abc123")
    monkeypatch.setenv("PDPP_WORKER_DEPLOYMENT", "pdpp-eu")
    assert Settings().worker_version() == WorkerDeploymentVersion("pdpp-eu", "2026.12.04-abc123")


@pytest.mark.parametrize(
    ("name", "value"), [("PDPP_WORKER_DEPLOYMENT", "pdpp.eu"), ("PDPP_WORKER_BUILD_ID", "a\nb")]
)
def test_a_name_temporal_cannot_hold_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name):
        Settings()


def at(hour: int) -> datetime:
    return datetime(2026, 12, 4, hour, tzinfo=UTC)


def build(build_id: str, created: int, current: int | None = None, deactivated: int | None = None) -> Build:
    return Build(
        build_id=build_id,
        status=BuildStatus.DRAINING,
        created_at=at(created),
        last_current_at=at(current) if current is not None else None,
        last_deactivated_at=at(deactivated) if deactivated is not None else None,
    )


def test_rollback_returns_to_the_build_that_was_current_last() -> None:
    d = Deployment(
        name="pdpp-orchestrator",
        current="v4",
        builds=[
            build("v4", 9, current=12),
            # v3 was only ever ramped (never current), and more recently than v2 stopped.
            build("v3", 8, deactivated=13),
            build("v2", 5, current=6, deactivated=12),
            build("v1", 1, current=2, deactivated=6),
        ],
    )
    assert previous_build(d) == "v2"
    assert previous_build(Deployment(name="x", current="v1", builds=[build("v1", 1, current=2)])) is None
