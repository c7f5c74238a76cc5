"""The PDPP connector wire protocol: framing, decoding and classification of each line.

Pure functions and small classes, no I/O, so the reader loop can be fuzzed and unit-tested.
Every line ends up either as an accepted message or as a `LineError` with a kind:

- framing.py: lines out of a byte stream, bounded in length
- decoding.py: one line into a message; JSON written back exactly
- records.py: a RECORD's key against the manifest's primary key, read from its envelope, and its
  time against the run's time range
- progress.py: PROGRESS's counts and blocks
- checks.py: the fields of every other message type
- misses.py: recovery hints, recovery classes, the upstream's wait signal
- responses.py: what the runtime writes back (INTERACTION_RESPONSE, gap pages)
"""

from pdpp_orch.protocol.checks import check_fields, count_or_len
from pdpp_orch.protocol.decoding import (
    MAX_NESTING,
    MESSAGE_TYPES,
    Envelope,
    contains_nul,
    decode,
    dumps,
    envelope,
    readable,
    record_data,
    record_envelope,
)
from pdpp_orch.protocol.framing import LineError, LineSplitter
from pdpp_orch.protocol.misses import (
    MAX_RETRY_AFTER_S,
    RECOVERY_ACTIONS,
    continuation_problem,
    parse_recovery_hint,
    recovery_class,
    retry_after_seconds,
)
from pdpp_orch.protocol.records import RecordRules, TimeWindow, key_text, record_key, refusal
from pdpp_orch.protocol.responses import (
    PAGE_DEFAULT_BYTES,
    interaction_response,
    page_budget,
    page_fit,
    page_response,
)

__all__ = [
    "MAX_NESTING",
    "MAX_RETRY_AFTER_S",
    "MESSAGE_TYPES",
    "PAGE_DEFAULT_BYTES",
    "RECOVERY_ACTIONS",
    "Envelope",
    "LineError",
    "LineSplitter",
    "RecordRules",
    "TimeWindow",
    "check_fields",
    "contains_nul",
    "continuation_problem",
    "count_or_len",
    "decode",
    "dumps",
    "envelope",
    "interaction_response",
    "key_text",
    "page_budget",
    "page_fit",
    "page_response",
    "parse_recovery_hint",
    "readable",
    "record_data",
    "record_envelope",
    "record_key",
    "recovery_class",
    "refusal",
    "retry_after_seconds",
]
