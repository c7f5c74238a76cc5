"""Custom search attributes: enums and counts only (they are not encrypted)."""

from typing import Any

from temporalio.common import SearchAttributeKey

CONNECTOR = SearchAttributeKey.for_keyword("PdppConnector")
TRIGGER = SearchAttributeKey.for_keyword("PdppTrigger")
RUN_STATUS = SearchAttributeKey.for_keyword("PdppRunStatus")
NEEDS_RETRY = SearchAttributeKey.for_bool("PdppNeedsRetry")
RECORDS_DURABLE = SearchAttributeKey.for_int("PdppRecordsDurable")
GAPS_OPEN = SearchAttributeKey.for_int("PdppGapsOpen")

ALL: list[SearchAttributeKey[Any]] = [CONNECTOR, TRIGGER, RUN_STATUS, NEEDS_RETRY, RECORDS_DURABLE, GAPS_OPEN]
