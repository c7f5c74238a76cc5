"""What a connector could not collect, and what it accounted for: SKIP_RESULT, DETAIL_GAP,
DETAIL_COVERAGE and the outcomes of served gaps (DETAIL_GAP_RECOVERED / _ATTEMPTED). Every
non-informational miss becomes a gap in the batch of its line (DESIGN §1 option C). Two kinds of
SKIP_RESULT are no miss: a runtime-owned continuation (a bounded page done, more planned for the
next run) and a report on records that were kept (reasons.REPORT_REASONS)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from activities.collect.facts import Coverage, Tally, count
from activities.collect.start import Served
from activities.collect.writer import Writer
from pdpp_orch import protocol, reasons
from pdpp_orch.models import CoverageFact, GapKind, RecoveryClass, StreamFacts
from pdpp_orch.policy import NO_STREAM
from pdpp_orch.store import ContinuationRow, NewGap

InScope = Callable[[Any, bytes], bool]


class Misses:
    """The handlers of the messages that report misses and coverage."""

    def __init__(
        self,
        tally: Tally,
        writer: Writer,
        in_scope: InScope,
        served: Served | None,
        reasons: dict[str, RecoveryClass] | None = None,
    ):
        self.tally = tally
        self.writer = writer
        self.in_scope = in_scope
        self.served = served
        # The registry's classes for the connector's own reasons (`[connectors.NAME.reasons]`).
        self.reasons = reasons or {}

    def skip(self, msg: dict[str, Any], item: bytes) -> None:
        """SKIP_RESULT: resources, a time range or a whole stream were not collected."""
        stream = msg.get("stream") or NO_STREAM
        if stream != NO_STREAM and not self.in_scope(stream, item):
            return
        reason = self.tally.reason(msg.get("reason") or "unspecified")
        sf = self.tally.stream(stream)
        if msg.get("continuation") is not None:
            self._continues(sf, msg, item, reason)
            return
        if reason in reasons.REPORT_REASONS:
            sf.reported_by_reason[reason] = sf.reported_by_reason.get(reason, 0) + 1
            return
        cls = self.classify(msg, item, reason, None, default_action=None)
        # `resources` is the reference's other spelling of `resource_ids`.
        resources = [str(r) for r in msg.get("resource_ids") or msg.get("resources") or []]
        count = len(resources) or 1
        self.tally.skipped(sf, reason, count)
        if cls is RecoveryClass.INFORMATIONAL:
            return
        sf.non_informational_skips += count
        not_before = _not_before(msg)
        message = msg.get("message")
        error = self.tally.said(str(message), 500) if message else None
        for kind, subject, locator in _skip_subjects(msg, resources, reason):
            self._gap(sf, NewGap(stream, kind, subject, reason, cls, locator, not_before, error))

    def _continues(self, sf: StreamFacts, msg: dict[str, Any], item: bytes, reason: str) -> None:
        """A runtime-owned continuation: this bounded page is complete and more is planned (the
        connector's own cursor carries where the next run goes on). Planned work, not a miss:
        no gap, no retry. An invalid one is refused, as the reference refuses it. What it says
        (boundary, slice) stays in PostgreSQL; the facts count it."""
        fact = msg["continuation"]
        problem = protocol.continuation_problem(fact)
        if problem is not None:
            self.writer.violate("invalid_continuation", problem, item)
            return
        if msg.get("recovery_hint") is not None:
            hint = protocol.parse_recovery_hint(msg["recovery_hint"])
            if isinstance(hint, protocol.LineError):  # the hint is refused; the page stands
                self.writer.violate(hint.kind, hint.detail, item)
        sf.continued += 1
        message = msg.get("message")
        self.writer.batch.continuations.append(
            ContinuationRow(
                sf.stream,
                self.tally.line_no,
                reason,
                protocol.dumps(fact, sort_keys=True).decode(),
                str(message)[:500] if message else None,
            )
        )

    def detail_gap(self, msg: dict[str, Any], item: bytes) -> None:
        """DETAIL_GAP: one record that could not be fetched, retryable unless it says otherwise."""
        stream = msg["stream"]
        if not self.in_scope(stream, item):
            return
        reason = self.tally.reason(msg.get("reason") or "unspecified")
        cls = self.classify(msg, item, reason, msg.get("retryable"), default_action="retry_by_runtime")
        raw_key = msg.get("record_key")
        key = (
            raw_key
            if isinstance(raw_key, str)
            else None
            if raw_key is None or raw_key == []
            else protocol.dumps(raw_key).decode()  # a number as its text, a list as JSON
        )
        if self.served is not None:
            self.served.reported(str(msg.get("gap_id")))
            if key is not None:
                self.served.reported_key(stream, key)
        locator = msg.get("detail_locator")
        subject = key or protocol.dumps(locator, sort_keys=True).decode()
        sf = self.tally.stream(stream)
        self.tally.skipped(sf, reason)
        if key is not None:
            self.tally.gap_keys.setdefault(stream, set()).add(key)
        last_error = msg.get("last_error")
        err_text = None if last_error is None else self.tally.said(protocol.dumps(last_error).decode(), 500)
        loc_json = protocol.dumps(locator).decode() if locator is not None else None
        if cls is not RecoveryClass.INFORMATIONAL:
            sf.non_informational_skips += 1
        parent = msg.get("parent_stream")
        self._gap(
            sf,
            NewGap(stream, GapKind.ITEM, subject, reason, cls, loc_json, _not_before(msg), err_text, parent),
        )

    def detail_coverage(self, msg: dict[str, Any], item: bytes) -> None:
        """DETAIL_COVERAGE: how many of a list's keys were hydrated or are backed by gaps."""
        stream = msg["stream"]
        if not self.in_scope(stream, item):
            return
        gap_raw = msg.get("gap_keys")
        gap_keys = (
            {k if isinstance(k, str) else protocol.dumps(k).decode() for k in gap_raw}
            if isinstance(gap_raw, list)
            else None
        )
        required = protocol.count_or_len(msg.get("required_keys"))
        hydrated = protocol.count_or_len(msg.get("hydrated_keys"))
        # Keys the connector may leave out account for themselves, as in the reference.
        optional_raw = msg.get("optional_skip_keys")
        if isinstance(msg.get("required_keys"), list) and isinstance(msg.get("hydrated_keys"), list):
            req = {str(k) for k in msg["required_keys"]}
            hyd = {str(k) for k in msg["hydrated_keys"]} & req
            hydrated = len(hyd)
            backed_keys = (gap_keys or set()) & (req - hyd)
            backed = len(backed_keys)
            optional = {str(k) for k in optional_raw} if isinstance(optional_raw, list) else set()
            skipped = len(optional & (req - hyd - backed_keys))
        else:
            backed = protocol.count_or_len(gap_raw)
            skipped = protocol.count_or_len(optional_raw)
        state_stream = msg.get("state_stream")
        fact = CoverageFact(
            stream=stream,
            state_stream=None if state_stream is None else self.tally.said(state_stream, 128),
            required=count(required) or 0,
            hydrated=count(hydrated) or 0,
            gap_backed=count(backed) or 0,
            optional_skipped=count(skipped) or 0,
            considered=count(msg.get("considered")),
            covered=count(msg.get("covered")),
        )
        self.tally.coverage[stream] = Coverage(fact, gap_keys)
        self.tally.facts.coverage[stream] = fact

    def recovered(self, msg: dict[str, Any]) -> None:
        """DETAIL_GAP_RECOVERED: a served gap is closed with the batch of its line."""
        self.writer.batch.recovered_gap_ids.append(msg["gap_id"])
        if self.served is not None:
            self.served.reported(msg["gap_id"])

    def attempted(self, msg: dict[str, Any]) -> None:
        """DETAIL_GAP_ATTEMPTED: the attempt is counted when the lease settles."""
        if self.served is not None:
            self.served.reported(msg["gap_id"])

    def classify(
        self,
        msg: dict[str, Any],
        item: bytes,
        reason: str,
        retryable: bool | None,
        default_action: str | None,
    ) -> RecoveryClass:
        """The recovery class of a miss: from its recovery_hint (a malformed one is a violation),
        else from the registry's class for its reason, else from the reference's vocabulary
        (the connector's own class for it, its generic reason codes), else from what it says of
        itself. A miss that says it is not retryable is never retried by the vocabulary."""
        action: str | None = None
        hint = msg.get("recovery_hint")
        if hint is not None:
            parsed = protocol.parse_recovery_hint(hint)
            if isinstance(parsed, protocol.LineError):
                self.writer.violate(parsed.kind, parsed.detail, item)
            else:
                action, stated = parsed
                retryable = stated if stated is not None else retryable
        if action is None:
            if reason in self.reasons:
                return self.reasons[reason]
            cls = reasons.reason_class(reason, _connector_class(msg))
            if cls is not None and not (retryable is False and cls.runtime_retryable):
                return cls
            if retryable is not False:
                action = default_action
        return protocol.recovery_class(reason, action, retryable)

    def _gap(self, sf: StreamFacts, gap: NewGap) -> None:
        self.writer.batch.gaps.append(gap)
        sf.gaps_opened += 1
        if gap.recovery_class.runtime_retryable:
            sf.gaps_retryable += 1

    def unanswered(self, stream: str, kind: str) -> None:
        """An INTERACTION nobody answered: what the connector could not collect without its
        owner is a gap."""
        sf = self.tally.stream(stream)
        reason = self.tally.reason(f"interaction_{kind}")
        self.tally.skipped(sf, reason)
        sf.non_informational_skips += 1
        self._gap(sf, NewGap(stream, GapKind.INTERACTION, kind, reason, RecoveryClass.OWNER_ACTION))


def _connector_class(msg: dict[str, Any]) -> str | None:
    """The class a connector put on a miss itself (`detail.class`, else `last_error.class`)."""
    for holder in (msg.get("detail"), msg.get("last_error")):
        if isinstance(holder, dict) and isinstance(holder.get("class"), str):
            return str(holder["class"])
    return None


def _skip_subjects(
    msg: dict[str, Any], resources: list[str], reason: str
) -> list[tuple[GapKind, str, str | None]]:
    """What a SKIP_RESULT's gaps stand for: each resource, the time range, or the stream."""
    if resources:
        return [(GapKind.ITEM, r, None) for r in resources]
    time_range = msg.get("time_range")
    if isinstance(time_range, dict):
        subject = protocol.dumps(time_range, sort_keys=True).decode()
        return [(GapKind.RANGE, subject, _range_locator(msg.get("diagnostics")))]
    return [(GapKind.STREAM, reason, None)]


def _range_locator(diagnostics: Any) -> str | None:
    """The longest range the source accepted, which is how a range gap will be re-requested."""
    if not isinstance(diagnostics, dict):
        return None
    days = diagnostics.get("longest_accepted_days") or diagnostics.get("max_range_days")
    if isinstance(days, int) and not isinstance(days, bool) and days > 0:
        return orjson.dumps({"max_days": days}).decode()
    return None


def _not_before(msg: dict[str, Any]) -> datetime | None:
    wait = protocol.retry_after_seconds(msg)
    return datetime.now(UTC) + timedelta(seconds=wait) if wait is not None else None
