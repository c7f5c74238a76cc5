"""Which streams a run's lines may speak of, and the record rules of each: the streams asked for,
each with its primary key and, when the run has a time range for it, its consent time window; in
a recovery run, the connector's other streams too, for their records only.

A recovery run here asks for one stream (narrowed to its gaps); the reference's recovery runs ask
for every stream, so a connector that ignores START.scope (the reference SDK does not filter by
it) sends the other streams' records there as a matter of course, and they are kept. They are kept
here too. What else it says of those streams is not this run's to act on: their STATE would
commit beside the forward runs that own those cursors, their misses would open gaps the recovery
of another stream could never close. Those lines are counted (`lines_outside_scope`) and left."""

from __future__ import annotations

from dataclasses import dataclass, field

from pdpp_orch import protocol
from pdpp_orch.manifest import Manifest, StreamSpec
from pdpp_orch.models import Mode, RunInput


@dataclass
class Admission:
    """The streams of one collect attempt and the record rules of each."""

    scope: dict[str, StreamSpec | None]
    pk: dict[str, list[str]] = field(default_factory=dict)
    rules: dict[str, protocol.RecordRules] = field(default_factory=dict)
    # Streams whose records are kept although the run did not ask for them (recovery runs).
    outside: frozenset[str] = frozenset()

    @classmethod
    def of(cls, manifest: Manifest, scope: dict[str, StreamSpec | None], run: RunInput) -> Admission:
        ranges = {s.name: s.time_range for s in run.streams if s.time_range}
        a = cls(scope)
        for name, spec in scope.items():
            if spec is None:
                continue
            tr = ranges.get(name)
            window = None
            if tr is not None and spec.consent_time_field and (tr.since or tr.until):
                window = protocol.TimeWindow(spec.consent_time_field, tr.since, tr.until)
            a.pk[name] = spec.primary_key
            a.rules[name] = protocol.RecordRules(spec.primary_key, window)
        if run.mode is Mode.RECOVERY:
            others = [s for s in manifest.streams if s.name not in scope]
            for spec in others:
                a.pk[spec.name] = spec.primary_key
                a.rules[spec.name] = protocol.RecordRules(spec.primary_key)
            a.outside = frozenset(s.name for s in others)
        return a

    def window(self, stream: str) -> protocol.TimeWindow | None:
        rules = self.rules.get(stream)
        return rules.window if rules is not None else None
