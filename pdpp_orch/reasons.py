"""The PDPP reference's reason vocabulary (DESIGN §12): its generic reason codes, the recovery
class its runtime gives each (runtime/recovery-reason-codes.ts, recovery-decision.ts), the
classes a connector may put on a detail gap, and the reasons that report on kept records. Pure:
the collect engine classes a miss by these when the message carries no recovery_hint and the
registry maps no class for its reason."""

from __future__ import annotations

from pdpp_orch.models import RecoveryClass

# The generic reason codes of the PDPP reference runtime (its runtime/recovery-reason-codes.ts)
# and the class its runtime/recovery-decision.ts gives each. Its `connector_defect` class holds
# defects and permanent unavailability alike: neither is retried. Its three non-pressure
# recovery classes (a planned run cap, a retry budget spent, a transient failure) are work the
# runtime drains again: transient here, retried with the connector's back-off.
REFERENCE_REASONS: dict[str, RecoveryClass] = {
    "rate_limited": RecoveryClass.PROVIDER_PRESSURE,
    "upstream_pressure": RecoveryClass.PROVIDER_PRESSURE,
    "auth_failure": RecoveryClass.OWNER_ACTION,
    "gone": RecoveryClass.CONNECTOR_DEFECT,
    "not_found": RecoveryClass.CONNECTOR_DEFECT,
    "permanent_forbidden": RecoveryClass.CONNECTOR_DEFECT,
    "quarantined": RecoveryClass.CONNECTOR_DEFECT,
    "not_available_in_mode": RecoveryClass.INFORMATIONAL,
    "out_of_scope": RecoveryClass.INFORMATIONAL,
    "user_disabled": RecoveryClass.INFORMATIONAL,
    "retry_exhausted": RecoveryClass.TRANSIENT,
    "run_cap_deferred": RecoveryClass.TRANSIENT,
    "temporary_unavailable": RecoveryClass.TRANSIENT,
}
# The class a connector may put on a detail gap itself (`last_error.class` or `detail.class`),
# which the reference lets override the reason's; a planned run cap stays pressure when its
# reason is.
CONNECTOR_CLASSES: dict[str, RecoveryClass] = {
    "run_cap_deferred": RecoveryClass.TRANSIENT,
    "owner_repair_required": RecoveryClass.OWNER_ACTION,
    "owner_required": RecoveryClass.OWNER_ACTION,
    "provider_pressure": RecoveryClass.PROVIDER_PRESSURE,
    "quarantined": RecoveryClass.CONNECTOR_DEFECT,
    "connector_defect": RecoveryClass.CONNECTOR_DEFECT,
    "transient_no_progress": RecoveryClass.TRANSIENT,
}
# Reasons that report something about records that were kept: not a miss at all (the reference
# SDK's SKIP_RESULT for a record retained with a value its schema does not model).
REPORT_REASONS = frozenset({"shape_check_unmodeled_value"})


def reason_class(reason: str, connector_class: str | None = None) -> RecoveryClass | None:
    """The reference's class for a miss by its own words: the connector's class for it, else
    the class of a generic reason code; None when neither is the reference's vocabulary."""
    by_reason = REFERENCE_REASONS.get(reason.strip())
    cls = CONNECTOR_CLASSES.get(connector_class.strip()) if connector_class else None
    if (
        cls is RecoveryClass.TRANSIENT
        and connector_class == "run_cap_deferred"
        and (by_reason is RecoveryClass.PROVIDER_PRESSURE)
    ):
        return by_reason
    return cls or by_reason
